"""Masked autoregressive flow layer (Papamakarios et al. 2017) with a MADE conditioner."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Key, Scalar, Shape
from ..nn import MaskedMLP
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


class MaskedAutoregressive(AbstractBijection):
    """MAF layer: ``y_i = τ(x_i; θ_i(y_{<i}, condition))`` over the flattened entries.

    ``θ = made([y, condition])`` is a :class:`physgen.nn.MaskedMLP` whose output for entry
    ``i`` sees only ``y_{<i}`` (and the condition). Transformer ``τ``:

    - ``'affine'``: ``y_i = shift_i + scale_i x_i``, ``scale = unit_positive(raw, min_scale)``;
    - ``'spline'``: a monotone rational-quadratic spline (``num_bins`` bins on
      ``[-interval, interval]``, identity tails), as in :class:`SplineCoupling`.

    Directions (the MAF convention): ``inverse`` (data -> noise, density evaluation,
    ``x = τ^{-1}(y; θ(y))``) is ONE parallel pass of the MADE network; ``transform``
    (noise -> data, sampling) is sequential, ``D`` passes in a ``jax.lax.fori_loop``.
    ``Invert(MaskedAutoregressive(...))`` is an IAF (fast sampling, sequential density).
    ``log|det ∂y/∂x| = Σ_i log τ'(x_i)``. The MADE's last layer is zero-initialised, so the
    layer starts as the identity.
    """

    made: MaskedMLP
    transformer: str = eqx.field(static=True)
    num_bins: int = eqx.field(static=True)
    interval: float = eqx.field(static=True)
    min_scale: float = eqx.field(static=True)
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
        transformer: str = "affine",
        width: int = 32,
        depth: int = 2,
        cond_shape: Shape | None = None,
        num_bins: int = 8,
        interval: float = 4.0,
        min_scale: float = 1e-3,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ):
        shape = as_shape(shape)
        cond_shape = None if cond_shape is None else as_shape(cond_shape, "cond_shape")
        if transformer not in ("affine", "spline"):
            raise ValueError(f"transformer must be 'affine' or 'spline', got {transformer!r}")
        if transformer == "spline":
            _check_spline_args(num_bins, interval, min_bin_width, min_bin_height, min_derivative)
            n_params = 3 * num_bins - 1
        else:
            n_params = 2
        if not 0 <= min_scale < 1:
            raise ValueError(f"min_scale must lie in [0, 1), got {min_scale}")
        dim = math.prod(shape)
        if dim < 1:
            raise ValueError(f"MaskedAutoregressive needs at least one entry, got {shape}")
        n_cond = 0 if cond_shape is None else math.prod(cond_shape)
        in_degrees = np.concatenate([np.arange(1, dim + 1), np.zeros(n_cond, int)])
        out_degrees = np.tile(np.arange(1, dim + 1), n_params)  # layout (n_params, dim)
        self.made = MaskedMLP(in_degrees, out_degrees, width, depth, key=key,
                              zero_init_last=True)
        self.transformer = transformer
        self.num_bins = num_bins
        self.interval = float(interval)
        self.min_scale = float(min_scale)
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_derivative = float(min_derivative)
        self.shape = shape
        self.cond_shape = cond_shape

    def _tau(self, x, y_for_params, condition, inverse: bool):
        """Apply τ (or τ^{-1}) to flat ``x`` with parameters computed from flat ``y``."""
        inp = y_for_params
        if self.cond_shape is not None:
            inp = jnp.concatenate([inp, jnp.reshape(condition, -1).astype(inp.dtype)])
        params = self.made(inp).reshape(-1, x.shape[0])  # (n_params, dim)
        if self.transformer == "affine":
            shift = params[0]
            scale = unit_positive(params[1], self.min_scale)
            if inverse:
                return (x - shift) / scale, -jnp.sum(jnp.log(scale))
            return shift + scale * x, jnp.sum(jnp.log(scale))
        k = self.num_bins
        p = params.T  # (dim, 3K - 1)
        knots = spline_knots(
            p[:, :k], p[:, k : 2 * k], p[:, 2 * k :], self.interval,
            self.min_bin_width, self.min_bin_height, self.min_derivative,
        )
        fn = rational_quadratic_spline_inverse if inverse else rational_quadratic_spline
        return elementwise_spline(fn, x, *knots)

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        """Sequential (``D`` MADE passes): noise -> data."""
        x = check_inputs(self, x, condition)
        xf = x.reshape(-1)
        dim = xf.shape[0]

        def body(_, y):
            return self._tau(xf, y, condition, inverse=False)[0]

        # After i passes the first i entries of y are final; the last pass gives the log-det.
        y = jax.lax.fori_loop(0, dim - 1, body, jnp.zeros_like(xf))
        y, ld = self._tau(xf, y, condition, inverse=False)
        return y.reshape(self.shape), ld

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        """Parallel (one MADE pass): data -> noise."""
        y = check_inputs(self, y, condition, "y")
        yf = y.reshape(-1)
        x, ld = self._tau(yf, yf, condition, inverse=True)
        return x.reshape(self.shape), ld
