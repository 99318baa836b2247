"""Coupling layers (NICE, RealNVP, neural spline): transform one part given the other."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, Key, Scalar, Shape
from ..nn import MLP
from ._base import AbstractBijection
from ._constraints import unit_positive
from ._spline import (
    _check_spline_args,
    elementwise_spline,
    rational_quadratic_spline,
    rational_quadratic_spline_inverse,
    spline_knots,
)
from ._utils import as_shape, check_inputs


def _partition(shape: Shape, mask, split) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Flat indices of the conditioning (unchanged) and the transformed entries, and the
    split point when the conditioning entries are exactly the first ``split`` ones."""
    size = math.prod(shape)
    if mask is not None and split is not None:
        raise ValueError("give either mask or split, not both")
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != tuple(shape):
            raise ValueError(
                f"mask must be a bool array of shape {tuple(shape)} (True = conditioning, "
                f"left unchanged), got dtype {m.dtype} and shape {m.shape}"
            )
        m = m.reshape(-1)
    else:
        split = size // 2 if split is None else split
        if not isinstance(split, (int, np.integer)) or not 0 <= split < size:
            raise ValueError(f"split must be an int in [0, {size}), got {split!r}")
        m = np.arange(size) < split
    cond_idx, trans_idx = np.flatnonzero(m), np.flatnonzero(~m)
    if trans_idx.size == 0:
        raise ValueError("the coupling mask leaves no entry to transform")
    contiguous = np.array_equal(cond_idx, np.arange(cond_idx.size))
    return (cond_idx.astype(np.int32), trans_idx.astype(np.int32),
            int(cond_idx.size) if contiguous else None)


def _conditioner(conditioner, in_size, out_size, width, depth, key):
    """Build a zero-output MLP, or check a user conditioner maps (in_size,) -> (out_size,)."""
    if conditioner is None:
        if in_size == 0:
            raise ValueError(
                "the coupling has nothing to condition on (no unchanged entries and no "
                "cond_shape); use an elementwise bijection instead"
            )
        return MLP(in_size, out_size, width, depth, key=key, zero_init_last=True)
    if not callable(conditioner):
        raise TypeError(f"conditioner must be callable, got {type(conditioner).__name__}")
    out = eqx.filter_eval_shape(conditioner, jax.ShapeDtypeStruct((in_size,), jnp.float32))
    if getattr(out, "shape", None) != (out_size,):
        raise ValueError(
            f"conditioner maps ({in_size},) to {getattr(out, 'shape', out)}, expected "
            f"({out_size},)"
        )
    return conditioner


def _cond_size(cond_shape) -> int:
    return 0 if cond_shape is None else math.prod(cond_shape)


def _split(bij, x, condition):
    """Flatten ``x``; return (flat, conditioner input, transformed entries).

    A contiguous partition is sliced rather than gathered: inside a stacked ``Scan`` the
    index arrays are traced, and gathers (scatter-adds in the backward pass) are markedly
    slower than slices on CPU."""
    flat = x.reshape(-1)
    if bij.split is not None:
        inp, rest = flat[: bij.split], flat[bij.split :]
    else:
        inp, rest = flat[bij.cond_idx], flat[bij.trans_idx]
    if bij.cond_shape is not None:
        inp = jnp.concatenate([inp, jnp.reshape(condition, -1).astype(flat.dtype)])
    return flat, inp, rest


def _merge(bij, flat, new):
    """``flat`` with its transformed entries replaced by ``new``, in the event shape."""
    if bij.split is not None:
        out = jnp.concatenate([flat[: bij.split], new])
    else:
        out = flat.at[bij.trans_idx].set(new)
    return out.reshape(bij.shape)


class AffineCoupling(AbstractBijection):
    """RealNVP affine / NICE additive coupling on one example of shape ``shape``.

    The flattened entries split into conditioning ones ``x_c`` (left unchanged: ``mask`` True,
    or the first ``split`` entries; default ``split = size // 2``) and transformed ones
    ``x_t``. With ``(shift, raw) = conditioner([x_c, condition])``:

    - affine (``additive=False``): ``y_t = shift + scale * x_t``,
      ``scale = unit_positive(raw, min_scale)`` (softplus, 1 at ``raw = 0``),
      ``log|det| = Σ log scale``;
    - additive (NICE): ``y_t = x_t + shift``, ``log|det| = 0``.

    The default conditioner is an :class:`physgen.nn.MLP` with zero-initialised last layer,
    so the layer starts as the identity; any callable ``(n_in,) -> (n_out,)`` module may be
    given instead (``n_in = len(x_c) + prod(cond_shape)``, ``n_out = len(x_t)`` additive,
    ``2 len(x_t)`` affine: shifts first, then raw scales).
    """

    conditioner: eqx.Module
    cond_idx: Array
    trans_idx: Array
    split: int | None = eqx.field(static=True)
    additive: bool = eqx.field(static=True)
    min_scale: float = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(
        self,
        shape: Shape | int,
        *,
        key: Key,
        mask: ArrayLike | None = None,
        split: int | None = None,
        conditioner: eqx.Module | None = None,
        conditioner_width: int = 32,
        conditioner_depth: int = 2,
        cond_shape: Shape | None = None,
        additive: bool = False,
        min_scale: float = 1e-3,
    ):
        shape = as_shape(shape)
        cond_shape = None if cond_shape is None else as_shape(cond_shape, "cond_shape")
        cond_idx, trans_idx, self.split = _partition(shape, mask, split)
        n_out = trans_idx.size * (1 if additive else 2)
        self.conditioner = _conditioner(
            conditioner, cond_idx.size + _cond_size(cond_shape), n_out,
            conditioner_width, conditioner_depth, key,
        )
        self.cond_idx = jnp.asarray(cond_idx)
        self.trans_idx = jnp.asarray(trans_idx)
        self.additive = bool(additive)
        if not 0 <= min_scale < 1:
            raise ValueError(f"min_scale must lie in [0, 1), got {min_scale}")
        self.min_scale = float(min_scale)
        self.shape = shape
        self.cond_shape = cond_shape

    def _shift_scale(self, inp, n):
        params = self.conditioner(inp)
        if self.additive:
            return params, None
        return params[:n], unit_positive(params[n:], self.min_scale)

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        flat, inp, xt = _split(self, x, condition)
        shift, scale = self._shift_scale(inp, xt.shape[0])
        if scale is None:
            yt, ld = xt + shift, jnp.zeros((), flat.dtype)
        else:
            yt, ld = shift + scale * xt, jnp.sum(jnp.log(scale))
        return _merge(self, flat, yt), ld

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        flat, inp, yt = _split(self, y, condition)
        shift, scale = self._shift_scale(inp, yt.shape[0])
        if scale is None:
            xt, ld = yt - shift, jnp.zeros((), flat.dtype)
        else:
            xt, ld = (yt - shift) / scale, -jnp.sum(jnp.log(scale))
        return _merge(self, flat, xt), ld


class SplineCoupling(AbstractBijection):
    """Neural-spline coupling (Durkan et al. 2019) on one example of shape ``shape``.

    Entries split as in :class:`AffineCoupling`. The conditioner maps ``[x_c, condition]`` to
    ``3K - 1`` raw numbers per transformed entry (``K`` widths, ``K`` heights, ``K - 1``
    interior derivatives, read by :func:`spline_knots`), and each ``x_t`` entry goes through
    its own monotone rational-quadratic spline on ``[-interval, interval]`` with identity
    tails. Zero conditioner output gives uniform bins and unit derivatives, i.e. the
    identity; the default MLP conditioner's last layer is zero-initialised.
    ``log|det| = Σ log spline'(x_t)``.
    """

    conditioner: eqx.Module
    cond_idx: Array
    trans_idx: Array
    split: int | None = eqx.field(static=True)
    num_bins: int = eqx.field(static=True)
    interval: float = eqx.field(static=True)
    min_bin_width: float = eqx.field(static=True)
    min_bin_height: float = eqx.field(static=True)
    min_derivative: float = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(
        self,
        shape: Shape | int,
        *,
        key: Key,
        num_bins: int = 8,
        interval: float = 4.0,
        mask: ArrayLike | None = None,
        split: int | None = None,
        conditioner: eqx.Module | None = None,
        conditioner_width: int = 32,
        conditioner_depth: int = 2,
        cond_shape: Shape | None = None,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ):
        shape = as_shape(shape)
        cond_shape = None if cond_shape is None else as_shape(cond_shape, "cond_shape")
        _check_spline_args(num_bins, interval, min_bin_width, min_bin_height, min_derivative)
        cond_idx, trans_idx, self.split = _partition(shape, mask, split)
        self.conditioner = _conditioner(
            conditioner, cond_idx.size + _cond_size(cond_shape),
            trans_idx.size * (3 * num_bins - 1), conditioner_width, conditioner_depth, key,
        )
        self.cond_idx = jnp.asarray(cond_idx)
        self.trans_idx = jnp.asarray(trans_idx)
        self.num_bins = num_bins
        self.interval = float(interval)
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)
        self.shape = shape
        self.cond_shape = cond_shape

    def _knots(self, inp, n):
        k = self.num_bins
        params = self.conditioner(inp).reshape(n, 3 * k - 1)
        return spline_knots(
            params[:, :k], params[:, k : 2 * k], params[:, 2 * k :], self.interval,
            self.min_bin_width, self.min_bin_height, self.min_derivative,
        )

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        flat, inp, xt = _split(self, x, condition)
        yt, ld = elementwise_spline(
            rational_quadratic_spline, xt, *self._knots(inp, xt.shape[0])
        )
        return _merge(self, flat, yt), ld

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        flat, inp, yt = _split(self, y, condition)
        xt, ld = elementwise_spline(
            rational_quadratic_spline_inverse, yt, *self._knots(inp, yt.shape[0])
        )
        return _merge(self, flat, xt), ld
