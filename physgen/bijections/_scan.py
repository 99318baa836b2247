"""``N`` identical layers with stacked parameters, applied with ``jax.lax.scan``."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key, Scalar, Shape
from ._base import AbstractBijection
from ._utils import check_inputs


class Scan(AbstractBijection):
    """``f = f_N ∘ ... ∘ f_1`` for ``N`` layers of one structure with stacked parameters.

    ``Scan(make_layer, keys)`` builds the layers as ``eqx.filter_vmap(make_layer)(keys)``:
    every array leaf of ``layers`` gets a leading axis of size ``N = len(keys)`` (``keys`` from
    ``jax.random.split(key, N)``). The forward map runs ``jax.lax.scan`` over that axis, the
    inverse scans it in reverse, so tracing and compile time do not grow with ``N``.

    ``make_layer(key)`` must return a bijection whose structure does not depend on the key;
    alternation between layers (masks, permutations) goes inside one layer, e.g. a
    :class:`Coupling` followed by ``Reverse((d,))`` in a :class:`Chain`.
    """

    layers: AbstractBijection
    num_layers: int = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, make_layer: Callable[[Key], AbstractBijection], keys: Key):
        if not callable(make_layer):
            raise TypeError("Scan: make_layer must be a callable key -> bijection")
        keys = jnp.asarray(keys)
        if not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) or keys.ndim != 1:
            raise ValueError(
                "Scan: keys must be a 1-D array of typed keys, e.g. "
                f"jax.random.split(jax.random.key(0), n); got dtype {keys.dtype}, "
                f"shape {keys.shape}"
            )
        if keys.shape[0] < 1:
            raise ValueError("Scan needs at least one layer (len(keys) >= 1)")
        # One compiled program instead of op-by-op batched dispatch (much faster to build).
        layers = eqx.filter_jit(eqx.filter_vmap(make_layer))(keys)
        if not isinstance(layers, AbstractBijection):
            raise TypeError(f"Scan: make_layer returned a {type(layers).__name__}")
        self.layers = layers
        self.num_layers = int(keys.shape[0])
        self.shape = tuple(layers.shape)
        self.cond_shape = layers.cond_shape

    def _scan(self, x, condition, inverse: bool):
        params, static = eqx.partition(self.layers, eqx.is_array)

        def step(carry, p):
            z, total = carry
            layer = eqx.combine(p, static)
            if inverse:
                z, ld = layer.inverse_and_log_det(z, condition)
            else:
                z, ld = layer.transform_and_log_det(z, condition)
            return (z, total + ld), None

        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.result_type(float)
        init = (x.astype(dtype), jnp.zeros((), dtype))
        (z, total), _ = jax.lax.scan(step, init, params, reverse=inverse)
        return z, total

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        return self._scan(x, condition, inverse=False)

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        return self._scan(y, condition, inverse=True)
