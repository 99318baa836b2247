"""Monotone rational-quadratic splines (Durkan et al. 2019, "Neural Spline Flows").

Pure functions on one scalar, plus the elementwise ``RationalQuadraticSpline`` bijection.

On ``[-B, B]`` the map is a monotone rational-quadratic spline through ``K + 1`` knots
``(x_k, y_k)`` with positive derivatives ``d_k`` at the knots (``d_0 = d_K = 1``); outside
it is the identity (linear tails), so the map is C^1 everywhere. In bin ``k``, with
``w = x_{k+1} - x_k``, ``h = y_{k+1} - y_k``, ``s = h / w``, ``xi = (x - x_k) / w``:

    y = y_k + h [s xi^2 + d_k xi (1 - xi)] / [s + (d_{k+1} + d_k - 2 s) xi (1 - xi)]
    dy/dx = s^2 [d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2]
            / [s + (d_{k+1} + d_k - 2 s) xi (1 - xi)]^2.

The inverse solves the quadratic ``a xi^2 + b xi + c = 0`` for ``xi in [0, 1]`` with the
cancellation-free root ``xi = 2 c / (-b - sqrt(b^2 - 4 a c))``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, ArrayLike, Key, Scalar, Shape
from ._base import AbstractBijection
from ._constraints import bin_fractions, unit_positive
from ._utils import as_shape, check_inputs


def spline_knots(
    raw_widths: ArrayLike,
    raw_heights: ArrayLike,
    raw_derivatives: ArrayLike,
    interval: float,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[Array, Array, Array]:
    """Unconstrained parameters -> knots on ``[-B, B]`` (``B = interval``).

    ``raw_widths``, ``raw_heights``: ``(..., K)``; ``raw_derivatives``: ``(..., K - 1)``
    (interior knots). Returns ``knots_x``, ``knots_y``, ``derivatives``, each ``(..., K + 1)``.
    Widths/heights are ``2B * bin_fractions(raw, min)``, interior derivatives
    ``unit_positive(raw, min_derivative)``, boundary derivatives 1. All-zero raw parameters
    give the identity (uniform bins, unit derivatives).
    """
    raw_widths = jnp.asarray(raw_widths)
    raw_heights = jnp.asarray(raw_heights)
    raw_derivatives = jnp.asarray(raw_derivatives)
    k = raw_widths.shape[-1]
    if raw_heights.shape != raw_widths.shape or raw_derivatives.shape != (
        raw_widths.shape[:-1] + (k - 1,)
    ):
        raise ValueError(
            "spline_knots: expected raw_widths and raw_heights of shape (..., K) and "
            f"raw_derivatives (..., K - 1); got {raw_widths.shape}, {raw_heights.shape}, "
            f"{raw_derivatives.shape}"
        )

    def knots(raw, minimum):
        cum = jnp.cumsum(bin_fractions(raw, minimum), axis=-1)
        zero = jnp.zeros(cum.shape[:-1] + (1,), cum.dtype)
        cum = jnp.concatenate([zero, cum[..., :-1], zero + 1], axis=-1)  # exact ends 0, 1
        return interval * (2 * cum - 1)

    d = unit_positive(raw_derivatives, min_derivative)
    one = jnp.ones(d.shape[:-1] + (1,), d.dtype)
    return (
        knots(raw_widths, min_bin_width),
        knots(raw_heights, min_bin_height),
        jnp.concatenate([one, d, one], axis=-1),
    )


def _bin(knots: Array, v: Array):
    """Index ``k`` of the bin ``[knots[k], knots[k+1]]`` holding ``v`` (clipped into range)."""
    k = jnp.sum(v >= knots[1:-1])
    return k, knots[k], knots[k + 1]


def _log_derivative(xi, s, d0, d1):
    t = xi * (1 - xi)
    denom = s + (d0 + d1 - 2 * s) * t
    num = d1 * xi**2 + 2 * s * t + d0 * (1 - xi) ** 2
    # one log, not three: s, num and denom are bounded away from 0 and inf by the minimum
    # bin sizes and derivatives, so the ratio cannot over- or underflow
    return jnp.log(num * (s / denom) ** 2)


def rational_quadratic_spline(
    x: Scalar, knots_x: Array, knots_y: Array, derivatives: Array
) -> tuple[Scalar, Scalar]:
    """Forward spline of a scalar ``x``: returns ``(y, log dy/dx)``; identity outside.

    ``knots_x``, ``knots_y``, ``derivatives``: ``(K + 1,)`` (see :func:`spline_knots`).
    """
    lo, hi = knots_x[0], knots_x[-1]
    inside = (x >= lo) & (x <= hi)
    xc = jnp.where(inside, x, lo)  # not clip: its gradient is halved at the ends
    k, x0, x1 = _bin(knots_x, xc)
    y0, y1 = knots_y[k], knots_y[k + 1]
    d0, d1 = derivatives[k], derivatives[k + 1]
    w, h = x1 - x0, y1 - y0
    s = h / w
    xi = (xc - x0) / w
    t = xi * (1 - xi)
    y_in = y0 + h * (s * xi**2 + d0 * t) / (s + (d0 + d1 - 2 * s) * t)
    logd = _log_derivative(xi, s, d0, d1)
    return jnp.where(inside, y_in, x), jnp.where(inside, logd, jnp.zeros_like(logd))


def rational_quadratic_spline_inverse(
    y: Scalar, knots_x: Array, knots_y: Array, derivatives: Array
) -> tuple[Scalar, Scalar]:
    """Inverse spline of a scalar ``y``: returns ``(x, log dx/dy)``; identity outside."""
    lo, hi = knots_y[0], knots_y[-1]
    inside = (y >= lo) & (y <= hi)
    yc = jnp.where(inside, y, lo)
    k, y0, y1 = _bin(knots_y, yc)
    x0, x1 = knots_x[k], knots_x[k + 1]
    d0, d1 = derivatives[k], derivatives[k + 1]
    w, h = x1 - x0, y1 - y0
    s = h / w
    dy = yc - y0
    c_ = d0 + d1 - 2 * s
    a = h * (s - d0) + dy * c_
    b = h * d0 - dy * c_
    c = -s * dy
    disc = jnp.maximum(b**2 - 4 * a * c, 0)
    xi = 2 * c / (-b - jnp.sqrt(disc))  # in [0, 1] up to rounding; no clip (gradients)
    x_in = x0 + xi * w
    logd = -_log_derivative(xi, s, d0, d1)
    return jnp.where(inside, x_in, y), jnp.where(inside, logd, jnp.zeros_like(logd))


def elementwise_spline(fn, x: Array, knots_x: Array, knots_y: Array, derivatives: Array):
    """Apply a scalar spline ``fn`` to every entry of ``x`` (shape ``S``) with its own knots
    (shape ``S + (K + 1,)``); return ``(y, sum of log-derivatives)``."""
    n = knots_x.shape[-1]
    y, logd = jax.vmap(fn)(
        x.reshape(-1), knots_x.reshape(-1, n), knots_y.reshape(-1, n), derivatives.reshape(-1, n)
    )
    return y.reshape(x.shape), jnp.sum(logd)


class RationalQuadraticSpline(AbstractBijection):
    """Elementwise monotone rational-quadratic spline with its own learnable knots.

    Every entry of ``x`` (shape ``shape``) gets its own ``K = num_bins`` bins on
    ``[-interval, interval]`` and identity tails outside. Parameters are unconstrained
    (``raw_widths``, ``raw_heights``: ``shape + (K,)``; ``raw_derivatives``:
    ``shape + (K - 1,)``) and read through :func:`spline_knots`. Without ``key`` the raw
    parameters are zero and the map is the identity; with ``key`` they are drawn from
    ``N(0, init_scale^2)``. Unconditional.
    """

    raw_widths: Array
    raw_heights: Array
    raw_derivatives: Array
    num_bins: int = eqx.field(static=True)
    interval: float = eqx.field(static=True)
    min_bin_width: float = eqx.field(static=True)
    min_bin_height: float = eqx.field(static=True)
    min_derivative: float = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(
        self,
        shape: Shape,
        num_bins: int = 8,
        interval: float = 4.0,
        *,
        key: Key | None = None,
        init_scale: float = 0.1,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ):
        shape = as_shape(shape)
        _check_spline_args(num_bins, interval, min_bin_width, min_bin_height, min_derivative)
        shapes = (shape + (num_bins,), shape + (num_bins,), shape + (num_bins - 1,))
        if key is None:
            raw = [jnp.zeros(s) for s in shapes]
        else:
            raw = [init_scale * jax.random.normal(k, s)
                   for k, s in zip(jax.random.split(key, 3), shapes, strict=True)]
        self.raw_widths, self.raw_heights, self.raw_derivatives = raw
        self.num_bins = num_bins
        self.interval = float(interval)
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)
        self.shape = shape
        self.cond_shape = None

    def _knots(self):
        return spline_knots(
            self.raw_widths, self.raw_heights, self.raw_derivatives, self.interval,
            self.min_bin_width, self.min_bin_height, self.min_derivative,
        )

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        return elementwise_spline(rational_quadratic_spline, x, *self._knots())

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        return elementwise_spline(rational_quadratic_spline_inverse, y, *self._knots())


def _check_spline_args(num_bins, interval, min_bin_width, min_bin_height, min_derivative):
    if not isinstance(num_bins, int) or isinstance(num_bins, bool) or num_bins < 1:
        raise ValueError(f"num_bins must be an int >= 1, got {num_bins!r}")
    if not float(interval) > 0:
        raise ValueError(f"interval (the half-width B of [-B, B]) must be > 0, got {interval}")
    for name, m in (("min_bin_width", min_bin_width), ("min_bin_height", min_bin_height)):
        if not 0 <= m * num_bins < 1:
            raise ValueError(f"{name} * num_bins must lie in [0, 1), got {m} * {num_bins}")
    if not 0 <= min_derivative < 1:
        raise ValueError(f"min_derivative must lie in [0, 1), got {min_derivative}")
