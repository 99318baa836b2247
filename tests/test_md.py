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
