"""Force fields from an openmm.System: the JAX port equals OpenMM's energies and forces, the
pure_callback bridge equals the port, unsupported forces are refused by name, and physgen
imports without OpenMM."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

openmm = pytest.importorskip("openmm")

import physgen.targets as pt  # noqa: E402
from physgen.observables import torsion_angles  # noqa: E402

N_CONFIGS = 50


@pytest.fixture(scope="module")
def molecule():
    return pt.alanine_dipeptide()


def _openmm_energies_and_forces(system, xs):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    u = openmm.unit
    energies, forces = [], []
    for x in xs:
        context.setPositions(x)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole))
        forces.append(state.getForces(asNumpy=True).value_in_unit(
            u.kilojoule_per_mole / u.nanometer))
    return np.array(energies), np.array(forces)


def _perturbed(positions, n, seed=0):
    """``n`` configurations: the minimum plus Gaussian noise of 0.002 to 0.02 nm, so that
    every term (stiff bonds to soft torsions) is away from its minimum."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.002, 0.02, n)[:, None, None]
    return positions[None] + scales * rng.standard_normal((n,) + positions.shape)


def _relative_errors(e, f, e_ref, f_ref):
    """Per configuration: |ΔE|/|E| and max|ΔF|/max|F|."""
    rel_e = np.abs(e - e_ref) / np.abs(e_ref)
    rel_f = np.abs(f - f_ref).max(axis=(1, 2)) / np.abs(f_ref).max(axis=(1, 2))
    return rel_e, rel_f


def test_port_equals_openmm_energies_and_forces(molecule, x64):
    """On 50 perturbed alanine dipeptide configurations, in float64: the port's ``U`` and
    ``F = -∇U`` equal OpenMM's (Reference platform) to a relative 1e-6 (measured: ~1e-14
    for energies, ~1e-12 for forces)."""
    xs = _perturbed(molecule.positions, N_CONFIGS)
    e_ref, f_ref = _openmm_energies_and_forces(molecule.system, xs)
    ff = pt.ForceField(molecule.system, temperature=300.0)
    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(ff.potential_energy)))
    e, g = value_and_grad(jnp.asarray(xs))
    assert e.dtype == jnp.float64
    rel_e, rel_f = _relative_errors(np.asarray(e), -np.asarray(g), e_ref, f_ref)
    assert rel_e.max() < 1e-6, rel_e.max()
    assert rel_f.max() < 1e-6, rel_f.max()
    # energies in kT at 300 K
    kt = 8.31446261815324e-3 * 300.0
    np.testing.assert_allclose(jax.vmap(ff.energy)(jnp.asarray(xs)), e_ref / kt, rtol=1e-10)
    np.testing.assert_allclose(jax.vmap(ff.log_density)(jnp.asarray(xs)), -e_ref / kt,
                               rtol=1e-10)


def test_port_in_float32_is_close(molecule):
    ff = pt.ForceField(molecule.system)
    xs = _perturbed(molecule.positions, 4, seed=1)
    e_ref, _ = _openmm_energies_and_forces(molecule.system, xs)
    e = jax.vmap(ff.potential_energy)(jnp.asarray(xs, jnp.float32))
    assert e.dtype == jnp.float32
    np.testing.assert_allclose(e, e_ref, rtol=1e-4, atol=1e-2)


def test_bridge_equals_port_under_jit_vmap_and_grad(molecule, x64):
    xs = jnp.asarray(_perturbed(molecule.positions, 8, seed=2))
    port = pt.ForceField(molecule.system, temperature=350.0)
    bridge = pt.OpenMMBridge(molecule.system, temperature=350.0)
    e_port, g_port = jax.jit(jax.vmap(jax.value_and_grad(port.energy)))(xs)
    e_bridge, g_bridge = jax.jit(jax.vmap(jax.value_and_grad(bridge.energy)))(xs)
    np.testing.assert_allclose(e_bridge, e_port, rtol=1e-10)
    np.testing.assert_allclose(g_bridge, g_port, rtol=1e-8, atol=1e-8)
    # one configuration, no vmap; and a forward-mode derivative along a random direction
    np.testing.assert_allclose(bridge.energy(xs[0]), e_port[0], rtol=1e-10)
    v = jnp.asarray(np.random.default_rng(3).standard_normal(xs[0].shape))
    np.testing.assert_allclose(jax.jvp(bridge.energy, (xs[0],), (v,))[1],
                               jnp.sum(g_port[0] * v), rtol=1e-8)


def _small_system(extra_force=None):
    """Two bonded particles with charges, and optionally one more force."""
    system = openmm.System()
    for _ in range(2):
        system.addParticle(12.0)
    bond = openmm.HarmonicBondForce()
    bond.addBond(0, 1, 0.15, 1000.0)
    system.addForce(bond)
    nb = openmm.NonbondedForce()
    nb.addParticle(0.5, 0.3, 0.5)
    nb.addParticle(-0.5, 0.3, 0.5)
    system.addForce(nb)
    if extra_force is not None:
        system.addForce(extra_force)
    return system


def test_port_refuses_unsupported_forces_by_name_and_the_bridge_evaluates_them(x64):
    external = openmm.CustomExternalForce("k*x^2")
    external.addGlobalParameter("k", 10.0)
    for i in range(2):
        external.addParticle(i, [])
    system = _small_system(external)
    with pytest.raises(ValueError, match="CustomExternalForce.*OpenMMBridge"):
        pt.ForceField(system)
    bridge = pt.OpenMMBridge(system)
    port = pt.ForceField(_small_system())
    x = jnp.array([[0.1, 0.0, 0.0], [0.0, 0.2, 0.05]])
    extra = 10.0 * 0.1**2
    np.testing.assert_allclose(bridge.potential_energy(x), port.potential_energy(x) + extra,
                               rtol=1e-12)


def test_refusals_name_the_problem():
    system = _small_system(openmm.MonteCarloBarostat(1.0, 300.0))
    for target in (pt.ForceField, pt.OpenMMBridge):
        with pytest.raises(ValueError, match="MonteCarloBarostat"):
            target(system)
    constrained = _small_system()
    constrained.addConstraint(0, 1, 0.15)
    with pytest.raises(ValueError, match="constraints"):
        pt.ForceField(constrained)
    periodic = _small_system()
    periodic.getForce(1).setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    with pytest.raises(ValueError, match="NonbondedForce"):
        pt.ForceField(periodic)
    with pytest.raises(TypeError, match="openmm.System"):
        pt.ForceField("not a system")
    with pytest.raises(ValueError, match="temperature"):
        pt.ForceField(_small_system(), temperature=-1.0)
    with pytest.raises(ValueError, match=r"shape \(3, 3\).*\(2, 3\)"):
        pt.ForceField(_small_system()).energy(jnp.zeros((3, 3)))


def test_exceptions_and_exclusions_are_applied(x64):
    """Three particles with an exception (scaled 1-4-like pair) and an exclusion."""
    system = openmm.System()
    nb = openmm.NonbondedForce()
    for q in (0.4, -0.3, 0.2):
        system.addParticle(1.0)
        nb.addParticle(q, 0.25, 0.6)
    nb.addException(0, 1, 0.0, 1.0, 0.0)  # excluded
    nb.addException(2, 0, 0.05, 0.2, 0.3)  # replaced (given in reverse order)
    system.addForce(nb)
    xs = np.random.default_rng(3).uniform(-0.5, 0.5, (5, 3, 3))
    e_ref, f_ref = _openmm_energies_and_forces(system, xs)
    ff = pt.ForceField(system)
    e, g = jax.vmap(jax.value_and_grad(ff.potential_energy))(jnp.asarray(xs))
    np.testing.assert_allclose(e, e_ref, rtol=1e-10)
    np.testing.assert_allclose(-g, f_ref, rtol=1e-8, atol=1e-8)


def test_alanine_dipeptide_is_built_here_and_has_a_finite_minimum(molecule, x64):
    """22 atoms named as ACE-ALA-NME, Amber ff99SB-ILDN terms, no constraints; the built
    structure is a minimum: finite energy, small forces, L-alanine, C7eq backbone."""
    top = molecule.topology
    assert top.getNumAtoms() == 22 == molecule.system.getNumParticles()
    assert [r.name for r in top.residues()] == ["ACE", "ALA", "NME"]
    assert molecule.system.getNumConstraints() == 0
    ff = pt.ForceField(molecule.system)
    x = jnp.asarray(molecule.positions)
    e, g = jax.value_and_grad(ff.potential_energy)(x)
    assert np.isfinite(e) and -200.0 < e < 0.0, e
    assert float(jnp.abs(g).max()) < 1.0  # the minimiser's tolerance, kJ/mol/nm
    p = molecule.positions
    n, ca, c, cb = p[6], p[8], p[14], p[10]
    assert np.dot(n - ca, np.cross(c - ca, cb - ca)) > 0  # L: positive chiral volume
    phi, psi = np.degrees(np.asarray(torsion_angles(x, [pt.PHI_ATOMS, pt.PSI_ATOMS])))
    assert -110 < phi < -50 and 30 < psi < 100, (phi, psi)


def test_physgen_imports_without_openmm_and_says_which_extra(monkeypatch):
    code = "import sys, physgen, physgen.targets; assert 'openmm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "openmm", None)
    monkeypatch.setitem(sys.modules, "openmm.app", None)
    with pytest.raises(ImportError, match=r"physgen\[molecules\]"):
        pt.ForceField(object())
