"""The tilted double well of Noé et al. (2019), with extra harmonic coordinates."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Key, Scalar, Shape, check_event_shape, check_single_example
from ._base import AbstractExactTarget
from ._quadrature import quartic_energy, quartic_tables


@eqx.filter_jit
def sample_quartic(key: Key, n: int, edges: np.ndarray, cdf: np.ndarray, dtype=None) -> Array:
    """``n`` draws from a 1-D density by inverse CDF on a table (``edges``, exact ``cdf``).

    Within a cell the CDF is interpolated linearly; with the cell widths used here (~2e-3) the
    error of this is far below Monte Carlo noise. Returns shape ``(n,)``.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    edges_j = jnp.asarray(edges, dtype)
    cdf_j = jnp.asarray(cdf, dtype)
    u = jax.random.uniform(key, (n,), dtype)
    idx = jnp.clip(jnp.searchsorted(cdf_j, u, side="right") - 1, 0, edges_j.shape[0] - 2)
    lo, hi = cdf_j[idx], cdf_j[idx + 1]
    frac = jnp.where(hi > lo, (u - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.5)
    return edges_j[idx] + jnp.clip(frac, 0.0, 1.0) * (edges_j[idx + 1] - edges_j[idx])


def _sampling_table(a4, a2, a1, beta):
    t = quartic_tables(float(a4), float(a2), float(a1), float(beta), n_panels=8000, order=8)
    return t["edges"], t["cdf"]


class DoubleWell(AbstractExactTarget):
    r"""Double well in ``x1`` with harmonic extra coordinates, ``event_shape = (dim,)``.

    .. math::
        E(x) = a_4 x_1^4 - a_2 x_1^2 + a_1 x_1 + \tfrac{k}{2} \sum_{i \ge 2} x_i^2

    Defaults ``(a4, a2, a1, k) = (1, 6, 1, 1)`` are those of Noé et al. (2019). State ``A`` is
    ``x1 < 0`` (the deeper well for ``a1 > 0``), ``B`` is ``x1 > 0``. ``log_Z`` is a 1-D
    composite Gauss–Legendre quadrature in float64 (relative error < 1e-13) times the Gaussian
    factor ``((2π/(βk))^{(dim-1)/2}``. All reference free energies are in units of kT.
    """

    event_shape: Shape = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    a4: float
    a2: float
    a1: float
    k: float
    beta: float

    def __init__(self, dim: int = 2, a4: float = 1.0, a2: float = 6.0, a1: float = 1.0,
                 k: float = 1.0, beta: float = 1.0):
        if int(dim) < 1:
            raise ValueError(f"DoubleWell needs dim >= 1, got dim={dim}")
        self.dim = int(dim)
        self.event_shape = (self.dim,)
        self.a4, self.a2, self.a1, self.k = float(a4), float(a2), float(a1), float(k)
        self.beta = float(beta)

    def __check_init__(self):
        if not (self.a4 > 0 and self.k > 0 and self.beta > 0):
            raise ValueError(
                f"DoubleWell needs a4 > 0, k > 0 and beta > 0, got a4={self.a4}, k={self.k}, "
                f"beta={self.beta}"
            )

    def energy(self, x: Array) -> Scalar:
        """``E(x)`` for one configuration ``x`` of shape ``(dim,)`` -> scalar."""
        check_single_example(x, self.event_shape, "DoubleWell.energy: x")
        x1 = x[0]
        rest = x[1:]
        return quartic_energy(x1, self.a4, self.a2, self.a1) + 0.5 * self.k * jnp.sum(rest * rest)

    # -- states -------------------------------------------------------------------------
    def state_indicator_A(self, x: Array) -> Array:
        """``x1 < 0``; ``x`` of shape ``(*batch, dim)`` -> bool ``(*batch,)``."""
        check_event_shape(x, self.event_shape, "DoubleWell.state_indicator_A: x")
        return x[..., 0] < 0

    def state_indicator_B(self, x: Array) -> Array:
        """``x1 > 0``; ``x`` of shape ``(*batch, dim)`` -> bool ``(*batch,)``."""
        check_event_shape(x, self.event_shape, "DoubleWell.state_indicator_B: x")
        return x[..., 0] > 0

    # -- exact references (host side, float64) -----------------------------------------
    def _table(self) -> dict:
        return quartic_tables(self.a4, self.a2, self.a1, self.beta)

    def log_Z(self) -> float:
        """``log ∫ exp(-β E(x)) dx`` (float64 quadrature; relative error < 1e-13)."""
        gauss = 0.5 * (self.dim - 1) * math.log(2.0 * math.pi / (self.beta * self.k))
        return self._table()["log_Z"] + gauss

    def references(self) -> dict[str, float]:
        """Exact ``log_Z``, ``p_A``, ``p_B``, ``delta_F_B_minus_A = -log(p_B/p_A)`` (kT),
        ``mean_x1``, ``var_x1`` and, when there are two wells, ``minimum_A_x1``,
        ``minimum_B_x1``, ``barrier_x1`` and ``barrier_height_from_A``/``_B`` (``β ΔE``, kT,
        of the 1-D potential in ``x1``)."""
        t = self._table()
        p_a = t["p_neg"]
        p_b = 1.0 - p_a
        ref = dict(
            log_Z=self.log_Z(),
            p_A=p_a,
            p_B=p_b,
            delta_F_B_minus_A=-math.log(p_b / p_a),
            mean_x1=t["mean"],
            var_x1=t["var"],
        )
        stat = t["stationary"]
        if len(stat) == 3:
            e = quartic_energy(stat, self.a4, self.a2, self.a1)
            ref.update(
                minimum_A_x1=float(stat[0]),
                minimum_B_x1=float(stat[2]),
                barrier_x1=float(stat[1]),
                barrier_height_from_A=float(self.beta * (e[1] - e[0])),
                barrier_height_from_B=float(self.beta * (e[1] - e[2])),
            )
        return ref

    def free_energy_profile(self, x1) -> np.ndarray:
        """Exact marginal free energy ``F(x1) = -log p(x1)`` (kT, normalised density).

        ``x1`` array-like of any shape -> float64 numpy array of the same shape. Compare with
        ``physgen.reweighting.free_energy_profile``, which uses the same normalisation.
        """
        x1 = np.asarray(x1, dtype=np.float64)
        t = self._table()
        return self.beta * quartic_energy(x1, self.a4, self.a2, self.a1) + t["log_Z"]

    def sample_exact(self, key: Key, n: int) -> Array:
        """``n`` exact samples, shape ``(n, dim)``: ``x1`` by inverse CDF, the rest Gaussian."""
        k1, k2 = jax.random.split(key)
        edges, cdf = _sampling_table(self.a4, self.a2, self.a1, self.beta)
        x1 = sample_quartic(k1, n, edges, cdf)
        rest = jax.random.normal(k2, (n, self.dim - 1), x1.dtype) / math.sqrt(self.beta * self.k)
        return jnp.concatenate([x1[:, None], rest], axis=1)
