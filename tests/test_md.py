"""Reference Langevin MD by OpenMM: reproducible from a key, at the right temperature, and
its energies are the targets' energies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("openmm")

import physgen.targets as pt  # noqa: E402


@pytest.fixture(scope="module")
def molecule():
    return pt.alanine_dipeptide()


def test_langevin_md_is_reproducible_and_thermal(molecule):
    """From the minimum at 300 K: ``⟨U - U_min⟩ / kT`` near its harmonic value
    ``(3N - 6)/2 = 30`` (the torsions add a little); one key, one trajectory."""
    run = dict(n_samples=200, interval=50, equilibration=2000)
    traj = pt.langevin_md(jax.random.key(0), molecule.system, molecule.positions, **run)
    assert traj.positions.shape == (200, 22, 3) and traj.potential_energies.shape == (200,)
    again = pt.langevin_md(jax.random.key(0), molecule.system, molecule.positions,
                           n_samples=3, interval=50, equilibration=2000)
    np.testing.assert_array_equal(again.positions, traj.positions[:3])
    other = pt.langevin_md(jax.random.key(1), molecule.system, molecule.positions,
                           n_samples=1, interval=50, equilibration=2000)
    assert not np.allclose(other.positions[0], traj.positions[0])
    ff = pt.ForceField(molecule.system, temperature=300.0)
    u_min = float(ff.energy(jnp.asarray(molecule.positions, jnp.float32)))
    excess = traj.reduced_energies.mean() - u_min
    assert 22 < excess < 42, excess
    # the energies OpenMM reports are the port's (float32 here: a loose tolerance)
    e = jax.vmap(ff.energy)(jnp.asarray(traj.positions[:20], jnp.float32))
    np.testing.assert_allclose(e, traj.reduced_energies[:20], rtol=1e-4, atol=1e-3)


def test_langevin_md_checks_its_inputs(molecule):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"positions must have shape \(22, 3\)"):
        pt.langevin_md(key, molecule.system, molecule.positions[:5])
    with pytest.raises(ValueError, match="n_samples"):
        pt.langevin_md(key, molecule.system, molecule.positions, n_samples=0)
    with pytest.raises(ValueError, match="temperature"):
        pt.langevin_md(key, molecule.system, molecule.positions, temperature=0.0)


def _harmonic_system(n: int = 10, k: float = 1000.0):
    """``n`` independent particles in ``U = ½ k |x|²`` (kJ/mol/nm²): ``U/kT ~ Gamma(3n/2)``."""
    import openmm as mm

    system = mm.System()
    force = mm.CustomExternalForce("0.5*k*(x^2 + y^2 + z^2)")
    force.addGlobalParameter("k", k)
    for i in range(n):
        system.addParticle(12.0)
        force.addParticle(i, [])
    system.addForce(force)
    return system


def test_replica_exchange_keeps_the_cold_replica_at_its_temperature():
    """Ten harmonic particles with replicas at 300, 450 and 675 K: the 300 K trajectory has
    ``⟨U⟩/kT = 3n/2 = 15`` (equipartition, exact) within 4 Monte Carlo standard errors
    (Geyer); swaps that took hot configurations without the Metropolis test (or with its sign
    reversed) leave it tens of errors too hot. Reproducible from its key."""
    from physgen.diagnostics import mean_and_mcse

    system = _harmonic_system()
    x0 = np.zeros((10, 3))
    run = dict(temperature=300.0, replica_temperatures=(450.0, 675.0), n_samples=3000,
               interval=20, equilibration=1000, timestep=0.002, friction=5.0)
    traj = pt.langevin_md(jax.random.key(0), system, x0, **run)
    assert traj.replica_temperatures == (450.0, 675.0)
    assert traj.exchange_acceptance.shape == (2,)
    assert np.all((traj.exchange_acceptance > 0.05) & (traj.exchange_acceptance < 0.95))
    mean, se = mean_and_mcse(traj.reduced_energies)
    assert abs(mean - 15.0) < 4 * float(se), (mean, float(se))
    assert float(se) < 0.3
    again = pt.langevin_md(jax.random.key(0), system, x0, **{**run, "n_samples": 5})
    np.testing.assert_array_equal(again.positions, traj.positions[:5])
    with pytest.raises(ValueError, match="replica_temperatures must increase"):
        pt.langevin_md(jax.random.key(0), system, x0, replica_temperatures=(450.0, 400.0))
