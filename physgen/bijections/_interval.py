"""Elementwise map of the real line onto intervals ``(low, high)``."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, Scalar, Shape
from ._base import AbstractBijection
from ._utils import check_inputs


class Interval(AbstractBijection):
    r"""``y = low + (high - low) σ(x)`` elementwise (``σ`` the logistic function), onto the
    open interval ``(low, high)``; entries whose bounds are ``(-inf, inf)`` pass unchanged.

    .. math::
        \log|\det| = \sum_{i:\,\mathrm{bounded}} \log(high_i - low_i) - \mathrm{softplus}(x_i)
                     - \mathrm{softplus}(-x_i).

    Inverse: ``x = logit((y - low)/(high - low))``, NaN for a ``y`` outside ``[low, high]``
    (not in the image). The use: confine a flow's coordinate to a part of its range that a
    symmetry makes equivalent to the rest, e.g. a torsion to the half circle of one
    stereoisomer. ``low`` and ``high`` broadcast to ``shape`` and are fixed (static, not
    trained); each entry has both bounds finite with ``low < high`` or both infinite.
    Unconditional.
    """

    low: tuple[float, ...] = eqx.field(static=True)
    high: tuple[float, ...] = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, low: ArrayLike, high: ArrayLike):
        lo, hi = np.broadcast_arrays(np.asarray(low, np.float64), np.asarray(high, np.float64))
        finite = np.isfinite(lo) & np.isfinite(hi)
        free = (lo == -np.inf) & (hi == np.inf)
        if np.any(np.isnan(lo) | np.isnan(hi)) or not np.all(finite | free):
            raise ValueError("Interval: each entry needs both bounds finite or (-inf, inf); "
                             f"got low {lo.tolist()}, high {hi.tolist()}")
        if np.any(finite & ~(lo < hi)):
            raise ValueError(f"Interval: low < high is needed, got low {lo[finite].tolist()}"
                             f" and high {hi[finite].tolist()} on the bounded entries")
        self.low, self.high = tuple(lo.reshape(-1).tolist()), tuple(hi.reshape(-1).tolist())
        self.shape = lo.shape
        self.cond_shape = None

    def _bounds(self, dtype):
        lo = np.array(self.low).reshape(self.shape)
        hi = np.array(self.high).reshape(self.shape)
        bounded = np.isfinite(lo)
        return (bounded, jnp.asarray(np.where(bounded, lo, 0.0), dtype),
                jnp.asarray(np.where(bounded, hi - lo, 1.0), dtype))

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        bounded, lo, width = self._bounds(x.dtype)
        y = jnp.where(bounded, lo + width * jax.nn.sigmoid(x), x)
        ld = jnp.log(width) - jax.nn.softplus(x) - jax.nn.softplus(-x)
        return y, jnp.sum(jnp.where(bounded, ld, 0.0))

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        bounded, lo, width = self._bounds(y.dtype)
        t = jnp.where(bounded, (y - lo) / width, 0.5)
        x = jnp.where(bounded, jnp.log(t) - jnp.log1p(-t), y)
        # log σ(x) + log σ(-x) = log t + log(1 - t): exact near either bound
        ld = jnp.log(t) + jnp.log1p(-t) + jnp.log(width)
        return x, -jnp.sum(jnp.where(bounded, ld, 0.0))
