"""Interacting particle systems (Köhler, Klein & Noé 2020): the multi-particle double well
(DW-4) and Lennard-Jones clusters (LJ-13, LJ-55).

Both energies depend only on interparticle distances (and LJ's harmonic term on positions
relative to the centre of mass), so they are invariant under translations, rotations,
reflections and permutations of identical particles. ``exp(-βE)`` is then not normalisable
on ``R^{n·d}``; the Boltzmann distribution lives on the ``(n-1)·d``-dimensional subspace of
zero centre of mass, ``Z = ∫_{Σ x_i = 0} exp(-βE) dσ`` with ``dσ`` the Lebesgue measure of
orthonormal coordinates of that subspace (the measure of
:class:`physgen.distributions.MeanFreeNormal` and of the flows built on it). Importance
weights ``-βE(x) - log q(x)`` of mean-free samples then estimate this ``Z``.

``com_restraint = k > 0`` adds ``½ k n |x̄|²``, which vanishes on the subspace and factorises
from the rest, so ``exp(-βE)`` becomes normalisable on ``R^{n·d}`` with the same law of the
mean-free part: MCMC on ``R^{n·d}`` (with mass-matrix adaptation) then samples ``x - x̄``
exactly, without a centre of mass that diffuses freely.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._base import Array, Scalar, Shape, check_int, check_single_example
from ._base import AbstractTarget


def _pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, 1)
    return i.astype(np.int32), j.astype(np.int32)


def _pair_sq_distances(x: Array) -> Array:
    """``|x_i - x_j|²`` for ``i < j``, shape ``(n(n-1)/2,)``."""
    i, j = _pair_indices(x.shape[0])
    diff = x[i] - x[j]
    return jnp.sum(diff * diff, axis=-1)


def _safe_sqrt(d2: Array) -> Array:
    # d = 0 only when two particles coincide; keep the gradient finite there
    tiny = jnp.finfo(d2.dtype).tiny
    return jnp.sqrt(jnp.maximum(d2, tiny))


def _com_term(x: Array, k: float) -> Scalar:
    if k == 0:
        return jnp.zeros((), x.dtype)
    mean = jnp.mean(x, axis=0)
    return 0.5 * k * x.shape[0] * jnp.sum(mean * mean)


def _check_common(n_particles, n_dims, beta, com_restraint, who):
    check_int(f"{who}: n_particles", n_particles, 2)
    check_int(f"{who}: n_dims", n_dims, 1)
    if not beta > 0:
        raise ValueError(f"{who} needs beta > 0, got beta={beta}")
    if not com_restraint >= 0:
        raise ValueError(f"{who} needs com_restraint >= 0, got {com_restraint}")


class MultiDoubleWell(AbstractTarget):
    r"""A double well in every interparticle distance (DW-4 of Köhler et al. 2020).

    .. math::
        E(x) = \sum_{i<j} a (d_{ij} - d_0)^4 + b (d_{ij} - d_0)^2 + c,
        \qquad d_{ij} = |x_i - x_j|

    (the benchmark: ``n_particles=4``, ``n_dims=2``, ``a=0.9``, ``b=-4``, ``c=0``,
    ``d0=4``, ``β = 1/τ = 1``; bgflow's ``MultiDoubleWellPotential``). For ``b < 0`` each
    pair has minima at ``d0 ± sqrt(-b/2a)`` with a barrier ``b²/4a`` between them (4.44 kT
    for the benchmark). ``x``: ONE configuration ``(n_particles, n_dims)`` -> scalar; plus
    ``½ k n |x̄|²`` for ``com_restraint = k`` (see the module docstring).
    """

    n_particles: int = eqx.field(static=True)
    n_dims: int = eqx.field(static=True)
    a: float
    b: float
    c: float
    d0: float
    beta: float
    com_restraint: float = eqx.field(static=True)
    event_shape: Shape = eqx.field(static=True)

    def __init__(self, n_particles: int = 4, n_dims: int = 2, *, a: float = 0.9,
                 b: float = -4.0, c: float = 0.0, d0: float = 4.0, beta: float = 1.0,
                 com_restraint: float = 0.0):
        _check_common(n_particles, n_dims, beta, com_restraint, "MultiDoubleWell")
        if not a > 0:
            raise ValueError(f"MultiDoubleWell needs a > 0 (a confining quartic), got a={a}")
        self.n_particles, self.n_dims = int(n_particles), int(n_dims)
        self.a, self.b, self.c, self.d0 = float(a), float(b), float(c), float(d0)
        self.beta = float(beta)
        self.com_restraint = float(com_restraint)
        self.event_shape = (self.n_particles, self.n_dims)

    def energy(self, x: Array) -> Scalar:
        """``E(x)`` for one configuration ``(n_particles, n_dims)`` -> scalar."""
        check_single_example(x, self.event_shape, "MultiDoubleWell.energy: x")
        x = jnp.asarray(x)
        u = _safe_sqrt(_pair_sq_distances(x)) - self.d0
        u2 = u * u
        pairs = self.a * u2 * u2 + self.b * u2 + self.c
        return jnp.sum(pairs) + _com_term(x, self.com_restraint)


class LennardJones(AbstractTarget):
    r"""A Lennard-Jones cluster held together by a harmonic trap about its centre of mass
    (LJ-13, LJ-55 of Köhler et al. 2020; bgflow's ``LennardJonesPotential`` with
    ``oscillator=True``).

    .. math::
        E(x) = \sum_{i<j} \varepsilon\left[\left(\frac{r_m}{d_{ij}}\right)^{12}
               - 2\left(\frac{r_m}{d_{ij}}\right)^{6}\right]
               + \frac{\kappa}{2} \sum_i |x_i - \bar x|^2

    with ``ε = r_m = κ = 1`` and ``β = 1`` for the benchmarks (``n_dims=3``). Written as
    ``ε s (s - 2)``, ``s = (r_m²/d²)³``, so coinciding particles give ``+inf``, not NaN.
    ``x``: ONE configuration ``(n_particles, n_dims)`` -> scalar; plus ``½ k n |x̄|²`` for
    ``com_restraint = k``.
    """

    n_particles: int = eqx.field(static=True)
    n_dims: int = eqx.field(static=True)
    epsilon: float
    r_m: float
    oscillator: float
    beta: float
    com_restraint: float = eqx.field(static=True)
    event_shape: Shape = eqx.field(static=True)

    def __init__(self, n_particles: int = 13, n_dims: int = 3, *, epsilon: float = 1.0,
                 r_m: float = 1.0, oscillator: float = 1.0, beta: float = 1.0,
                 com_restraint: float = 0.0):
        _check_common(n_particles, n_dims, beta, com_restraint, "LennardJones")
        if not (epsilon > 0 and r_m > 0 and oscillator >= 0):
            raise ValueError(
                f"LennardJones needs epsilon > 0, r_m > 0, oscillator >= 0; got {epsilon}, "
                f"{r_m}, {oscillator}"
            )
        self.n_particles, self.n_dims = int(n_particles), int(n_dims)
        self.epsilon, self.r_m, self.oscillator = float(epsilon), float(r_m), float(oscillator)
        self.beta = float(beta)
        self.com_restraint = float(com_restraint)
        self.event_shape = (self.n_particles, self.n_dims)

    def energy(self, x: Array) -> Scalar:
        """``E(x)`` for one configuration ``(n_particles, n_dims)`` -> scalar."""
        check_single_example(x, self.event_shape, "LennardJones.energy: x")
        x = jnp.asarray(x)
        s = (self.r_m**2 / _pair_sq_distances(x)) ** 3
        lj = self.epsilon * jnp.sum(s * (s - 2.0))
        centred = x - jnp.mean(x, axis=0)
        trap = 0.5 * self.oscillator * jnp.sum(centred * centred)
        return lj + trap + _com_term(x, self.com_restraint)
