"""The many-well problem of Midgley et al. (2023, FAB): ``dim/2`` independent double wells."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Key, Scalar, Shape, check_event_shape, check_single_example
from ._base import AbstractExactTarget
from ._double_well import _sampling_table, sample_quartic
from ._quadrature import quartic_energy, quartic_tables

_A4, _A2, _A1 = 1.0, 6.0, -0.5
_MAX_MODE_PAIRS = 24


class ManyWell(AbstractExactTarget):
    r"""Sum of ``dim/2`` identical 2-D double wells, ``event_shape = (dim,)``.

    .. math::
        E(x) = \sum_{k=0}^{dim/2-1} \left[x_{2k}^4 - 6 x_{2k}^2 - \tfrac12 x_{2k}
               + \tfrac12 x_{2k+1}^2\right]

    It has ``2^(dim/2)`` modes, one per sign pattern of ``(x_0, x_2, x_4, ...)``. Everything
    factorises over pairs, so ``log_Z = (dim/2) log Z_pair`` (1-D float64 quadrature, relative
    error < 1e-13, times the Gaussian factor) and exact samples are cheap (:meth:`sample_exact`).
    """

    event_shape: Shape = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    beta: float

    def __init__(self, dim: int = 32, beta: float = 1.0):
        dim = int(dim)
        if dim < 2 or dim % 2:
            raise ValueError(f"ManyWell needs an even dim >= 2, got dim={dim}")
        self.dim = dim
        self.event_shape = (dim,)
        self.beta = float(beta)

    def __check_init__(self):
        if not self.beta > 0:
            raise ValueError(f"ManyWell needs beta > 0, got beta={self.beta}")

    @property
    def n_pairs(self) -> int:
        return self.dim // 2

    def energy(self, x: Array) -> Scalar:
        """``E(x)`` for one configuration ``x`` of shape ``(dim,)`` -> scalar."""
        check_single_example(x, self.event_shape, "ManyWell.energy: x")
        pairs = x.reshape(self.n_pairs, 2)
        xs, ys = pairs[:, 0], pairs[:, 1]
        return jnp.sum(quartic_energy(xs, _A4, _A2, _A1)) + 0.5 * jnp.sum(ys * ys)

    # -- modes --------------------------------------------------------------------------
    def mode_signs(self, x: Array) -> Array:
        """``x_{2k} > 0`` for each pair; ``(*batch, dim)`` -> bool ``(*batch, dim/2)``."""
        check_event_shape(x, self.event_shape, "ManyWell.mode_signs: x")
        return x[..., 0::2] > 0

    def mode_index(self, x: Array) -> Array:
        """Mode of ``x`` as an integer ``Σ_k 2^k [x_{2k} > 0]`` in ``[0, 2^(dim/2))``.

        ``(*batch, dim)`` -> int32 ``(*batch,)``; needs ``dim/2 <= 31`` (else use
        :meth:`mode_signs`). Row ``i`` of :meth:`mode_centres` is the centre of mode ``i``.
        """
        if self.n_pairs > 31:
            raise ValueError(f"mode_index needs dim/2 <= 31 pairs, got {self.n_pairs}")
        bits = self.mode_signs(x).astype(jnp.int32)
        return jnp.sum(bits << jnp.arange(self.n_pairs, dtype=jnp.int32), axis=-1)

    def mode_centres(self) -> Array:
        """All ``2^(dim/2)`` local minima, shape ``(2^(dim/2), dim)``, built on request.

        Row ``i`` has ``x_{2k}`` at the right minimum (≈ 1.7525) when bit ``k`` of ``i`` is set,
        else at the left one (≈ -1.7108), and ``x_{2k+1} = 0``. Refuses more than 2^24 modes.
        """
        if self.n_pairs > _MAX_MODE_PAIRS:
            raise ValueError(
                f"ManyWell(dim={self.dim}) has 2^{self.n_pairs} modes; mode_centres builds at "
                f"most 2^{_MAX_MODE_PAIRS}"
            )
        stat = quartic_tables(_A4, _A2, _A1, self.beta)["stationary"]
        left, right = float(stat[0]), float(stat[-1])
        idx = np.arange(2**self.n_pairs)[:, None]
        bits = (idx >> np.arange(self.n_pairs)[None, :]) & 1
        centres = np.zeros((2**self.n_pairs, self.dim))
        centres[:, 0::2] = np.where(bits == 1, right, left)
        return jnp.asarray(centres)

    # -- exact references ---------------------------------------------------------------
    def _table(self) -> dict:
        return quartic_tables(_A4, _A2, _A1, self.beta)

    def log_Z_per_pair(self) -> float:
        """``log ∫∫ exp(-β E_pair(x, y)) dx dy``."""
        return self._table()["log_Z"] + 0.5 * math.log(2.0 * math.pi / self.beta)

    def log_Z(self) -> float:
        """``(dim/2) · log Z_pair`` (float64 quadrature; relative error < 1e-13)."""
        return self.n_pairs * self.log_Z_per_pair()

    def references(self) -> dict[str, float]:
        """``log_Z``, ``log_Z_per_pair``, ``n_modes``, per-pair ``p_x_positive``, ``mean_x``,
        ``var_x`` (of each ``x_{2k}``)."""
        t = self._table()
        return dict(
            log_Z=self.log_Z(),
            log_Z_per_pair=self.log_Z_per_pair(),
            n_modes=float(2**self.n_pairs),
            p_x_positive=1.0 - t["p_neg"],
            mean_x=t["mean"],
            var_x=t["var"],
        )

    def sample_exact(self, key: Key, n: int) -> Array:
        """``n`` exact samples, shape ``(n, dim)``: each ``x_{2k}`` by inverse CDF on a float64
        quadrature table, each ``x_{2k+1}`` Gaussian with variance ``1/β``."""
        kx, ky = jax.random.split(key)
        edges, cdf = _sampling_table(_A4, _A2, _A1, self.beta)
        xs = sample_quartic(kx, n * self.n_pairs, edges, cdf).reshape(n, self.n_pairs)
        ys = jax.random.normal(ky, (n, self.n_pairs), xs.dtype) / math.sqrt(self.beta)
        return jnp.stack([xs, ys], axis=-1).reshape(n, self.dim)
