r"""A molecular force field in JAX, read from an ``openmm.System``.

The port evaluates the standard terms of a vacuum System (``NoCutoff``):

.. math::
    U(x) = \sum_{\text{bonds}} \tfrac12 k_b (r - r_0)^2
         + \sum_{\text{angles}} \tfrac12 k_θ (θ - θ_0)^2
         + \sum_{\text{torsions}} k_φ \big(1 + \cos(n φ - φ_0)\big)
         + \sum_{i<j} \Big[\frac{q_i q_j}{4π ε_0 r_{ij}}
           + 4 ε_{ij}\Big(\big(\tfrac{σ_{ij}}{r_{ij}}\big)^{12}
           - \big(\tfrac{σ_{ij}}{r_{ij}}\big)^{6}\Big)\Big],

the nonbonded pairs with Lorentz-Berthelot mixing (``σ_ij = (σ_i + σ_j)/2``,
``ε_ij = sqrt(ε_i ε_j)``) except where the System lists an exception (its own ``q_i q_j``,
``σ``, ``ε``; all zero: excluded), exactly as OpenMM's ``HarmonicBondForce``,
``HarmonicAngleForce``, ``PeriodicTorsionForce`` and ``NonbondedForce``. Units are OpenMM's:
positions in nm, ``U`` in kJ/mol.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._base import (
    Array,
    Scalar,
    Shape,
    angle_between,
    check_single_example,
    torsion_from_bonds,
)
from ._base import AbstractTarget
from ._openmm import NO_ENERGY, check_system, force_name, import_openmm, kT

# 1/(4π ε0) in kJ nm/(mol e²), the value OpenMM uses (CODATA 2018)
ONE_4PI_EPS0 = 138.93545764438198
PORTED = ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce")


def _values(quantities, units):
    return [q.value_in_unit(u) for q, u in zip(quantities, units, strict=True)]


def _read_forces(system, who: str) -> dict[str, np.ndarray]:
    """The parameters of every ported force, as float64/int32 NumPy arrays (OpenMM units)."""
    mm = import_openmm()
    u = mm.unit
    nm, kj, rad = u.nanometer, u.kilojoule_per_mole, u.radian
    bonds, angles, torsions, pairs = [], [], [], []
    n_nonbonded = 0
    for k in range(system.getNumForces()):
        force = system.getForce(k)
        name = force_name(force)
        if name in NO_ENERGY:
            continue
        if name not in PORTED:
            raise ValueError(
                f"{who} cannot port force {k} of the System, a {name}; it ports "
                f"{', '.join(PORTED)}. OpenMMBridge evaluates any System through OpenMM"
            )
        if force.usesPeriodicBoundaryConditions():
            raise ValueError(f"{who}: force {k} ({name}) uses periodic boundary conditions; "
                             "only vacuum Systems (NoCutoff) are ported")
        if name == "HarmonicBondForce":
            for i in range(force.getNumBonds()):
                a, b, r0, kb = force.getBondParameters(i)
                bonds.append((a, b, *_values((r0, kb), (nm, kj / nm**2))))
        elif name == "HarmonicAngleForce":
            for i in range(force.getNumAngles()):
                a, b, c, t0, kt = force.getAngleParameters(i)
                angles.append((a, b, c, *_values((t0, kt), (rad, kj / rad**2))))
        elif name == "PeriodicTorsionForce":
            for i in range(force.getNumTorsions()):
                a, b, c, d, n, phase, kp = force.getTorsionParameters(i)
                torsions.append((a, b, c, d, n, *_values((phase, kp), (rad, kj))))
        else:
            n_nonbonded += 1
            pairs = _read_nonbonded(force, system.getNumParticles(), who, k)
    if n_nonbonded > 1:
        raise ValueError(f"{who}: the System has {n_nonbonded} NonbondedForces; expected one")

    def table(rows, n_int, n_float):
        rows = np.array(rows, dtype=np.float64).reshape(-1, n_int + n_float)
        return rows[:, :n_int].astype(np.int32), rows[:, n_int:]

    out = {}
    out["bond_idx"], (out["bond_r0"], out["bond_k"]) = _split(table(bonds, 2, 2))
    out["angle_idx"], (out["angle_theta0"], out["angle_k"]) = _split(table(angles, 3, 2))
    idx, par = table(torsions, 5, 2)
    out["torsion_idx"], out["torsion_n"] = idx[:, :4], idx[:, 4].astype(np.float64)
    out["torsion_phase"], out["torsion_k"] = par[:, 0], par[:, 1]
    out["pair_idx"], (out["pair_qq"], out["pair_sigma"], out["pair_epsilon"]) = _split(
        table(pairs, 2, 3))
    return out


def _split(idx_par):
    idx, par = idx_par
    return idx, tuple(np.ascontiguousarray(par[:, j]) for j in range(par.shape[1]))


def _read_nonbonded(force, n: int, who: str, k: int) -> list[tuple]:
    """Every interacting pair ``(i, j, q_i q_j, σ_ij, ε_ij)``, exceptions applied."""
    mm = import_openmm()
    u = mm.unit
    if force.getNonbondedMethod() != mm.NonbondedForce.NoCutoff:
        raise ValueError(f"{who}: force {k} (NonbondedForce) uses a cutoff or a periodic "
                         "method; only NoCutoff (vacuum) is ported")
    if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        raise ValueError(f"{who}: force {k} (NonbondedForce) has parameter offsets; not "
                         "ported")
    units = (u.elementary_charge, u.nanometer, u.kilojoule_per_mole)
    q, sigma, eps = np.array([_values(force.getParticleParameters(i), units)
                              for i in range(n)], dtype=np.float64).reshape(n, 3).T
    i, j = np.triu_indices(n, 1)
    qq = q[i] * q[j]
    sij = 0.5 * (sigma[i] + sigma[j])
    eij = np.sqrt(eps[i] * eps[j])
    where = {(a, b): m for m, (a, b) in enumerate(zip(i, j, strict=True))}
    qq_unit = u.elementary_charge**2
    for e in range(force.getNumExceptions()):
        a, b, cp, s, ep = force.getExceptionParameters(e)
        m = where[(min(a, b), max(a, b))]
        qq[m], sij[m], eij[m] = _values((cp, s, ep), (qq_unit, *units[1:]))
    keep = (qq != 0) | (eij != 0)  # an exception with both zero is an exclusion
    return list(zip(i[keep], j[keep], qq[keep], sij[keep], eij[keep], strict=True))


def _differences(first: np.ndarray, second: np.ndarray, n: int) -> np.ndarray:
    """``D`` of shape ``(m, n)`` with ``(D @ x)[t] = x[second[t]] - x[first[t]]``."""
    d = np.zeros((len(first), n))
    rows = np.arange(len(first))
    d[rows, second] += 1.0
    d[rows, first] -= 1.0
    return d


class ForceField(AbstractTarget):
    r"""The Boltzmann density of an ``openmm.System`` at ``temperature``, in JAX.

    ``energy(x) = U(x) / k_B T`` for ONE configuration ``x`` of shape ``(n_atoms, 3)`` in
    nm (``beta = 1``, so ``log_density = -U/k_B T``); ``potential_energy(x) = U(x)`` in
    kJ/mol (see the module docstring for ``U``). Differentiable, ``jit``- and
    ``vmap``-able; the parameters are read once from the System (float64) and cast to the
    dtype of ``x``.

    Ports ``HarmonicBondForce``, ``HarmonicAngleForce``, ``PeriodicTorsionForce`` and
    ``NonbondedForce`` with ``NoCutoff`` (``CMMotionRemover`` adds no energy and is
    ignored); any other force is refused by name (:class:`OpenMMBridge` evaluates it
    through OpenMM instead), as are constraints and virtual sites.

    The bond vectors of every term come from one matrix product ``D @ x`` with a fixed
    ``(n_terms, n_atoms)`` matrix of ±1 rather than from gathers: on a CPU the gradient of
    a gather (a scatter-add) costs several times the energy, a matrix product's transpose
    does not. Memory is ``O((n_terms + n_pairs) · n_atoms)``: meant for small molecules in
    vacuum (up to a few hundred atoms).
    """

    bond_idx: np.ndarray
    bond_r0: np.ndarray
    bond_k: np.ndarray
    angle_idx: np.ndarray
    angle_theta0: np.ndarray
    angle_k: np.ndarray
    torsion_idx: np.ndarray
    torsion_n: np.ndarray
    torsion_phase: np.ndarray
    torsion_k: np.ndarray
    pair_idx: np.ndarray
    pair_qq: np.ndarray
    pair_sigma: np.ndarray
    pair_epsilon: np.ndarray
    bond_diff: np.ndarray
    angle_diff: np.ndarray
    torsion_diff: np.ndarray
    pair_diff: np.ndarray
    masses: np.ndarray
    temperature: float = eqx.field(static=True)
    kT: float = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    event_shape: Shape = eqx.field(static=True)

    def __init__(self, system, temperature: float = 300.0):
        who = "ForceField"
        self.kT = kT(temperature)
        self.temperature = float(temperature)
        self.masses = check_system(system, who)
        for name, value in _read_forces(system, who).items():
            setattr(self, name, value)
        n = len(self.masses)
        b, a, t, p = self.bond_idx, self.angle_idx, self.torsion_idx, self.pair_idx
        self.bond_diff = _differences(b[:, 0], b[:, 1], n)  # a -> b
        self.angle_diff = np.stack([_differences(a[:, 1], a[:, 0], n),  # b -> a
                                    _differences(a[:, 1], a[:, 2], n)])  # b -> c
        self.torsion_diff = np.stack([_differences(t[:, c], t[:, c + 1], n) for c in range(3)])
        self.pair_diff = _differences(p[:, 0], p[:, 1], n)
        self.beta = 1.0
        self.event_shape = (n, 3)

    def potential_energy(self, x: Array) -> Scalar:
        """``U(x)`` in kJ/mol for one configuration ``(n_atoms, 3)`` in nm."""
        check_single_example(x, self.event_shape, "ForceField.potential_energy: x")
        x = jnp.asarray(x)
        dtype = x.dtype

        def p(a):
            return jnp.asarray(a, dtype)

        def vectors(d):
            return p(d) @ x

        r = jnp.sqrt(jnp.sum(vectors(self.bond_diff) ** 2, axis=-1))
        u_bond = 0.5 * jnp.sum(p(self.bond_k) * (r - p(self.bond_r0)) ** 2)
        theta = angle_between(*vectors(self.angle_diff))
        u_angle = 0.5 * jnp.sum(p(self.angle_k) * (theta - p(self.angle_theta0)) ** 2)
        phi = torsion_from_bonds(*vectors(self.torsion_diff))
        u_torsion = jnp.sum(p(self.torsion_k) * (1 + jnp.cos(p(self.torsion_n) * phi
                                                             - p(self.torsion_phase))))
        r2 = jnp.sum(vectors(self.pair_diff) ** 2, axis=-1)
        s6 = (p(self.pair_sigma) ** 2 / r2) ** 3
        u_lj = jnp.sum(4 * p(self.pair_epsilon) * s6 * (s6 - 1))
        u_coulomb = ONE_4PI_EPS0 * jnp.sum(p(self.pair_qq) / jnp.sqrt(r2))
        return u_bond + u_angle + u_torsion + u_lj + u_coulomb

    def energy(self, x: Array) -> Scalar:
        """``U(x) / k_B T`` for one configuration ``(n_atoms, 3)`` in nm."""
        return self.potential_energy(x) / jnp.asarray(self.kT, jnp.result_type(x))
