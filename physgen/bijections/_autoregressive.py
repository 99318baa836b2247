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
from ._transformers import AbstractTransformer, AffineTransformer
from ._utils import as_shape, check_inputs


class MaskedAutoregressive(AbstractBijection):
    """MAF layer: ``y_i = τ(x_i; θ_i(y_{<i}, condition))`` over the flattened entries.

    ``θ = made([y, condition])`` is a :class:`physgen.nn.MaskedMLP` whose output for entry
    ``i`` sees only ``y_{<i}`` (and the condition); the transformer ``τ`` (default
    :class:`AffineTransformer`, or e.g. :class:`SplineTransformer`) reads ``θ`` as
    ``(num_params, D)``.

    Directions (the MAF convention): ``inverse`` (data -> noise, density evaluation,
    ``x = τ^{-1}(y; θ(y))``) is ONE parallel pass of the MADE network; ``transform``
    (noise -> data, sampling) is sequential, ``D`` passes in a ``jax.lax.fori_loop``.
    ``Invert(MaskedAutoregressive(...))`` is an IAF (fast sampling, sequential density).
    ``log|det ∂y/∂x| = Σ_i log τ'(x_i)``. The MADE's last layer is zero-initialised, so the
    layer starts as the identity.
    """

    made: MaskedMLP
    transformer: AbstractTransformer
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(
        self,
        shape: Shape | int,
        *,
        key: Key,
        transformer: AbstractTransformer | None = None,
        width: int = 32,
        depth: int = 2,
        cond_shape: Shape | None = None,
    ):
        shape = as_shape(shape)
        cond_shape = None if cond_shape is None else as_shape(cond_shape, "cond_shape")
        transformer = AffineTransformer() if transformer is None else transformer
        if not isinstance(transformer, AbstractTransformer):
            raise TypeError(
                f"transformer must be an AbstractTransformer, got {type(transformer).__name__}"
            )
        dim = math.prod(shape)
        if dim < 1:
            raise ValueError(f"MaskedAutoregressive needs at least one entry, got {shape}")
        n_cond = 0 if cond_shape is None else math.prod(cond_shape)
        in_degrees = np.concatenate([np.arange(1, dim + 1), np.zeros(n_cond, int)])
        # layout (num_params, dim)
        out_degrees = np.tile(np.arange(1, dim + 1), transformer.num_params)
        self.made = MaskedMLP(in_degrees, out_degrees, width, depth, key=key,
                              zero_init_last=True)
        self.transformer = transformer
        self.shape = shape
        self.cond_shape = cond_shape

    def _tau(self, x, y_for_params, condition, inverse: bool):
        """Apply τ (or τ^{-1}) to flat ``x`` with parameters computed from flat ``y``."""
        inp = y_for_params
        if self.cond_shape is not None:
            inp = jnp.concatenate([inp, jnp.reshape(condition, -1).astype(inp.dtype)])
        params = self.made(inp).reshape(-1, x.shape[0])
        tau = self.transformer.inverse if inverse else self.transformer.forward
        out, log_derivatives = tau(x, params)
        return out, jnp.sum(log_derivatives)

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
