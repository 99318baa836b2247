"""Transformers: elementwise monotone maps ``y_i = τ(x_i; θ_i)`` whose parameters a network
computes (in a :class:`~physgen.bijections.Coupling` or a
:class:`~physgen.bijections.MaskedAutoregressive` layer)."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array
from ._constraints import unit_positive
from ._spline import (
    _check_spline_args,
    rational_quadratic_spline,
    rational_quadratic_spline_inverse,
    spline_knots,
)


class AbstractTransformer(eqx.Module):
    """``y_i = τ(x_i; θ_i)``, monotone in ``x_i``, with ``num_params`` parameters per entry.

    ``forward(x, params) -> (y, log τ'(x))`` and ``inverse(y, params) -> (x, log (τ⁻¹)'(y))``,
    both elementwise: ``x`` has shape ``S`` and ``params`` shape ``(num_params,) + S``
    (parameter-major, as a conv net's channels); the outputs hold one value per entry of
    ``x``, in shape ``S`` or flattened (a transformer vmapped over entries returns them
    flat). All-zero parameters give the identity.

    ``parities[p] = ±1`` when ``τ(−x; σ ⊙ θ) = −τ(x; θ)`` with an equal log-derivative
    for ``σ = parities`` (what a Z2-equivariant conditioner needs); ``None`` when the
    parameterisation has no such symmetry. ``flat_by_entry``: how one flat vector of
    parameters (an MLP's output) is ordered, by entry (each entry's ``num_params`` together)
    or by parameter (all entries' first parameter, then the second, ...); part of the format
    of saved conditioners.
    """

    num_params: eqx.AbstractVar[int]
    parities: eqx.AbstractVar[tuple[int, ...] | None]
    flat_by_entry: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def forward(self, x: Array, params: Array) -> tuple[Array, Array]:
        """``(τ(x; θ), log τ'(x; θ))``, elementwise."""

    @abc.abstractmethod
    def inverse(self, y: Array, params: Array) -> tuple[Array, Array]:
        """``(τ⁻¹(y; θ), log (τ⁻¹)'(y; θ))``, elementwise."""


class AffineTransformer(AbstractTransformer):
    """``τ(x; t, r) = t + s x`` with ``s = unit_positive(r, min_scale)`` (RealNVP), so
    ``log τ' = log s``; ``additive=True``: ``τ(x; t) = x + t`` (NICE), ``log τ' = 0``.

    Parameters ``(t, r)`` (``(t,)`` additive); parities ``(−1, +1)``: ``t`` odd, ``r`` even.
    """

    additive: bool = eqx.field(static=True)
    min_scale: float = eqx.field(static=True)
    flat_by_entry: ClassVar[bool] = False

    def __init__(self, *, additive: bool = False, min_scale: float = 1e-3):
        if not 0 <= min_scale < 1:
            raise ValueError(f"min_scale must lie in [0, 1), got {min_scale}")
        self.additive = bool(additive)
        self.min_scale = float(min_scale)

    @property
    def num_params(self) -> int:
        return 1 if self.additive else 2

    @property
    def parities(self) -> tuple[int, ...]:
        return (-1,) if self.additive else (-1, 1)

    def forward(self, x: Array, params: Array) -> tuple[Array, Array]:
        if self.additive:
            return x + params[0], jnp.zeros_like(x)
        scale = unit_positive(params[1], self.min_scale)
        return params[0] + scale * x, jnp.log(scale)

    def inverse(self, y: Array, params: Array) -> tuple[Array, Array]:
        if self.additive:
            return y - params[0], jnp.zeros_like(y)
        scale = unit_positive(params[1], self.min_scale)
        return (y - params[0]) / scale, -jnp.log(scale)


class SplineTransformer(AbstractTransformer):
    """Monotone rational-quadratic spline (Durkan et al. 2019) with ``K = num_bins`` bins on
    ``[-interval, interval]`` and identity tails.

    Parameters: ``K`` raw widths, ``K`` raw heights, ``K - 1`` raw interior derivatives, read
    by :func:`~physgen.bijections.spline_knots`. No Z2 parities (``parities = None``): an
    odd spline needs mirrored knots, not parameters of a definite sign.
    """

    num_bins: int = eqx.field(static=True)
    interval: float = eqx.field(static=True)
    min_bin_width: float = eqx.field(static=True)
    min_bin_height: float = eqx.field(static=True)
    min_derivative: float = eqx.field(static=True)
    flat_by_entry: ClassVar[bool] = True
    parities: ClassVar[None] = None

    def __init__(
        self,
        num_bins: int = 8,
        interval: float = 4.0,
        *,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ):
        _check_spline_args(num_bins, interval, min_bin_width, min_bin_height, min_derivative)
        self.num_bins = num_bins
        self.interval = float(interval)
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)

    @property
    def num_params(self) -> int:
        return 3 * self.num_bins - 1

    def _apply(self, fn, x, params):
        k = self.num_bins
        p = jnp.moveaxis(params, 0, -1).reshape(-1, 3 * k - 1)
        knots = spline_knots(
            p[:, :k], p[:, k : 2 * k], p[:, 2 * k :], self.interval,
            self.min_bin_width, self.min_bin_height, self.min_derivative,
        )
        return jax.vmap(fn)(x.reshape(-1), *knots)

    def forward(self, x: Array, params: Array) -> tuple[Array, Array]:
        return self._apply(rational_quadratic_spline, x, params)

    def inverse(self, y: Array, params: Array) -> tuple[Array, Array]:
        return self._apply(rational_quadratic_spline_inverse, y, params)


def wrap_angle(x: Array) -> Array:
    """``x`` mapped into ``[-π, π)`` by a multiple of ``2π`` (derivative 1)."""
    return jnp.mod(x + jnp.pi, 2 * jnp.pi) - jnp.pi


class CircularSplineTransformer(AbstractTransformer):
    r"""Circular rational-quadratic spline (Rezende et al. 2020, "Normalizing Flows on Tori
    and Spheres"): a diffeomorphism of the circle, for angles such as torsions.

    ``τ(x) = wrap(s(wrap(x)) + ω)``: ``s`` is a monotone rational-quadratic spline with
    ``K = num_bins`` bins from ``(-π, -π)`` to ``(π, π)`` whose derivatives at the two ends
    are one shared parameter, so ``s`` glues into a C¹ map of the circle; ``ω`` rotates the
    circle (``shift=True``), which frees the fixed point ``±π``. Periodic in every respect:
    ``τ(x + 2π) = τ(x)``, and ``τ`` and ``log τ'`` are continuous across ``±π``. Outputs lie
    in ``[-π, π)``; inputs may be any real (read mod ``2π``), so a round trip returns
    ``wrap(x)``.

    Parameters per entry (``flat_by_entry``): ``K`` raw widths, ``K`` raw heights, ``K``
    raw knot derivatives (the knots ``0 … K-1``; knot ``K`` is knot 0), then the raw shift
    ``ω`` if ``shift``; read as in :func:`~physgen.bijections.spline_knots` with
    ``interval = π``. All zero: the identity. No Z2 parities.
    """

    num_bins: int = eqx.field(static=True)
    shift: bool = eqx.field(static=True)
    min_bin_width: float = eqx.field(static=True)
    min_bin_height: float = eqx.field(static=True)
    min_derivative: float = eqx.field(static=True)
    flat_by_entry: ClassVar[bool] = True
    parities: ClassVar[None] = None

    def __init__(
        self,
        num_bins: int = 8,
        *,
        shift: bool = True,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ):
        _check_spline_args(num_bins, jnp.pi, min_bin_width, min_bin_height, min_derivative)
        self.num_bins = num_bins
        self.shift = bool(shift)
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)

    @property
    def num_params(self) -> int:
        return 3 * self.num_bins + int(self.shift)

    def _knots_and_shift(self, params: Array, n: int):
        k = self.num_bins
        p = jnp.moveaxis(params, 0, -1).reshape(n, self.num_params)
        knots_x, knots_y, _ = spline_knots(
            p[:, :k], p[:, k : 2 * k], p[:, 2 * k + 1 : 3 * k], jnp.pi,
            self.min_bin_width, self.min_bin_height, self.min_derivative,
        )
        d = unit_positive(p[:, 2 * k : 3 * k], self.min_derivative)
        derivatives = jnp.concatenate([d, d[:, :1]], axis=-1)  # d_K = d_0: C¹ on the circle
        omega = p[:, 3 * k] if self.shift else jnp.zeros(n, p.dtype)
        return (knots_x, knots_y, derivatives), omega

    def forward(self, x: Array, params: Array) -> tuple[Array, Array]:
        x = x.reshape(-1)
        knots, omega = self._knots_and_shift(params, x.size)
        y, logd = jax.vmap(rational_quadratic_spline)(wrap_angle(x), *knots)
        return wrap_angle(y + omega), logd

    def inverse(self, y: Array, params: Array) -> tuple[Array, Array]:
        y = y.reshape(-1)
        knots, omega = self._knots_and_shift(params, y.size)
        return jax.vmap(rational_quadratic_spline_inverse)(wrap_angle(y - omega), *knots)
