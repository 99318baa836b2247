r"""Checkerboard couplings on a periodic lattice field, conditioned by periodic convolutions.

A field ``φ`` of shape ``(L₁, L₂)`` splits into the sites of one checkerboard colour,
``m(x) = 1`` for ``(x₁ + x₂) mod 2 = parity`` (frozen: left unchanged), and the others
(active: transformed site by site, with parameters computed from the frozen sites by a
:class:`~physgen.nn.PeriodicConvNet`). Albergo, Kanwar & Shanahan, PRD 100, 034515 (2019).

Symmetries: the convolutions commute with lattice translations and the checkerboard is
invariant under the translations that preserve the colour of a site (``s₁ + s₂`` even), so
for even ``L₁, L₂`` a layer is equivariant under those: ``f(roll(φ, s)) = roll(f(φ), s)``
with the same log-det.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Key, Scalar, Shape
from ..nn._conv import PeriodicConvNet
from ._base import AbstractBijection
from ._constraints import unit_positive
from ._spline import (
    _check_spline_args,
    rational_quadratic_spline,
    rational_quadratic_spline_inverse,
    spline_knots,
)
from ._utils import as_shape, check_inputs


def checkerboard(shape: Shape, parity: int) -> np.ndarray:
    """Bool mask, True on the sites with ``(x₁ + x₂) mod 2 == parity``, shape ``shape``."""
    i, j = np.indices(tuple(shape))
    return (i + j) % 2 == parity


def _check_lattice(shape, parity) -> tuple[int, int]:
    shape = as_shape(shape)
    if len(shape) != 2 or min(shape) < 2:
        raise ValueError(f"a lattice coupling acts on a 2-D field (L1, L2), L >= 2; got {shape}")
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity!r}")
    return shape


def _check_net(net, out_channels):
    if not isinstance(net, PeriodicConvNet):
        raise TypeError(f"conditioner must be a PeriodicConvNet, got {type(net).__name__}")
    if net.in_channels != 1 or net.out_channels != out_channels:
        raise ValueError(
            f"conditioner maps {net.in_channels} -> {net.out_channels} channels, expected "
            f"1 -> {out_channels}"
        )
    return net


class CheckerboardAffineCoupling(AbstractBijection):
    r"""Affine checkerboard coupling on one field of shape ``(L₁, L₂)``.

    With ``m`` the frozen checkerboard colour and ``(t, r) = net(m ⊙ φ)`` (two output
    channels), ``y = m ⊙ φ + (1 − m) ⊙ (t + s ⊙ φ)`` with ``s = unit_positive(r, min_scale)``
    and ``log|det| = Σ_x (1 − m) log s``. The default net is a zero-initialised
    :class:`~physgen.nn.PeriodicConvNet`, so a new layer is the identity.

    ``z2_equivariant=True`` symmetrises the net, ``t(φ) = ½(t̃(φ) − t̃(−φ))`` (odd) and
    ``r(φ) = ½(r̃(φ) + r̃(−φ))`` (even), so that ``f(−φ) = −f(φ)`` with an equal log-det.
    """

    conditioner: PeriodicConvNet
    parity: int = eqx.field(static=True)
    z2_equivariant: bool = eqx.field(static=True)
    min_scale: float = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(
        self,
        shape: Shape,
        parity: int,
        *,
        key: Key,
        hidden_channels: tuple[int, ...] = (8, 8),
        kernel_size: int = 3,
        z2_equivariant: bool = False,
        conditioner: PeriodicConvNet | None = None,
        min_scale: float = 1e-3,
    ):
        self.shape = _check_lattice(shape, parity)
        self.parity = int(parity)
        if conditioner is None:
            conditioner = PeriodicConvNet(
                1, 2, hidden_channels, kernel_size, key=key, zero_init_last=True
            )
        self.conditioner = _check_net(conditioner, 2)
        if not 0 <= min_scale < 1:
            raise ValueError(f"min_scale must lie in [0, 1), got {min_scale}")
        self.min_scale = float(min_scale)
        self.z2_equivariant = bool(z2_equivariant)
        self.cond_shape = None

    def _shift_scale(self, frozen):
        if self.z2_equivariant:
            both = jax.vmap(self.conditioner)(jnp.stack([frozen, -frozen])[:, None])
            shift = 0.5 * (both[0, 0] - both[1, 0])
            raw = 0.5 * (both[0, 1] + both[1, 1])
        else:
            out = self.conditioner(frozen[None])
            shift, raw = out[0], out[1]
        return shift, unit_positive(raw, self.min_scale)

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        m = jnp.asarray(checkerboard(self.shape, self.parity), x.dtype)
        frozen = m * x
        shift, scale = self._shift_scale(frozen)
        y = frozen + (1 - m) * (shift + scale * x)
        return y, jnp.sum((1 - m) * jnp.log(scale))

    def inverse_and_log_det(self, y: Array, condition: Array | None = None) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        m = jnp.asarray(checkerboard(self.shape, self.parity), y.dtype)
        frozen = m * y
        shift, scale = self._shift_scale(frozen)
        x = frozen + (1 - m) * (y - shift) / scale
        return x, -jnp.sum((1 - m) * jnp.log(scale))


class CheckerboardSplineCoupling(AbstractBijection):
    r"""Rational-quadratic spline checkerboard coupling on one field of shape ``(L₁, L₂)``.

    The net maps the frozen sites ``m ⊙ φ`` to ``3K − 1`` channels (``K = num_bins`` raw
    widths, ``K`` raw heights, ``K − 1`` raw interior derivatives per site, read by
    :func:`~physgen.bijections.spline_knots`); every active site goes through its own
    monotone spline on ``[−interval, interval]`` with identity tails. Zero net output is
    the identity (the default net's last layer is zero). ``log|det| = Σ_{active} log y'``.
    No Z2-equivariant variant (use :class:`CheckerboardAffineCoupling`).
    """

    conditioner: PeriodicConvNet
    parity: int = eqx.field(static=True)
    num_bins: int = eqx.field(static=True)
    interval: float = eqx.field(static=True)
    min_bin_width: float = eqx.field(static=True)
    min_bin_height: float = eqx.field(static=True)
    min_derivative: float = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(
        self,
        shape: Shape,
        parity: int,
        *,
        key: Key,
        num_bins: int = 8,
        interval: float = 4.0,
        hidden_channels: tuple[int, ...] = (8, 8),
        kernel_size: int = 3,
        conditioner: PeriodicConvNet | None = None,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ):
        self.shape = _check_lattice(shape, parity)
        self.parity = int(parity)
        _check_spline_args(num_bins, interval, min_bin_width, min_bin_height, min_derivative)
        if conditioner is None:
            conditioner = PeriodicConvNet(
                1, 3 * num_bins - 1, hidden_channels, kernel_size, key=key, zero_init_last=True
            )
        self.conditioner = _check_net(conditioner, 3 * num_bins - 1)
        self.num_bins = num_bins
        self.interval = float(interval)
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)
        self.cond_shape = None

    def _apply(self, x, inverse: bool):
        mask = checkerboard(self.shape, self.parity)
        m = jnp.asarray(mask, x.dtype)
        k = self.num_bins
        params = jnp.moveaxis(self.conditioner((m * x)[None]), 0, -1).reshape(-1, 3 * k - 1)
        kx, ky, d = spline_knots(
            params[:, :k],
            params[:, k : 2 * k],
            params[:, 2 * k :],
            self.interval,
            self.min_bin_width,
            self.min_bin_height,
            self.min_derivative,
        )
        fn = rational_quadratic_spline_inverse if inverse else rational_quadratic_spline
        out, logd = jax.vmap(fn)(x.reshape(-1), kx, ky, d)
        active = jnp.asarray(~mask.reshape(-1))
        out = jnp.where(active, out, x.reshape(-1)).reshape(self.shape)
        return out, jnp.sum(jnp.where(active, logd, 0))

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        return self._apply(x, inverse=False)

    def inverse_and_log_det(self, y: Array, condition: Array | None = None) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        return self._apply(y, inverse=True)
