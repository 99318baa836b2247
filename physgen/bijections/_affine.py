"""Elementwise affine map ``y = loc + scale * x``."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._base import Array, ArrayLike, Scalar, Shape
from ._base import AbstractBijection
from ._constraints import check_positive, inv_positive, positive
from ._utils import check_inputs


class Affine(AbstractBijection):
    """``y = loc + scale * x`` elementwise, ``log|det| = sum(log scale)``.

    ``loc`` and ``scale`` broadcast together to ``shape``; ``scale > 0`` is stored as
    ``raw_scale = inv_positive(scale)`` and read back as ``positive(raw_scale)`` (softplus;
    see ``_constraints``). Unconditional.
    """

    loc: Array
    raw_scale: Array
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, loc: ArrayLike = 0.0, scale: ArrayLike = 1.0):
        loc = jnp.asarray(loc, dtype=jnp.result_type(float) if _is_int(loc) else None)
        scale = jnp.asarray(scale, dtype=jnp.result_type(float) if _is_int(scale) else None)
        check_positive(scale, "Affine: scale")
        shape = jnp.broadcast_shapes(loc.shape, scale.shape)
        self.loc = jnp.broadcast_to(loc, shape)
        self.raw_scale = jnp.broadcast_to(inv_positive(scale), shape)
        self.shape = tuple(shape)
        self.cond_shape = None

    @property
    def scale(self) -> Array:
        return positive(self.raw_scale)

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        scale = self.scale
        return self.loc + scale * x, jnp.sum(jnp.log(scale))

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        scale = self.scale
        return (y - self.loc) / scale, -jnp.sum(jnp.log(scale))


def _is_int(v) -> bool:
    return not jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact)
