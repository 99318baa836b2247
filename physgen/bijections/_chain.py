"""Composition of bijections."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp

from .._base import Array, Scalar, Shape
from ._base import AbstractBijection
from ._utils import check_inputs


def common_cond_shape(bijections: Sequence[AbstractBijection], who: str) -> Shape | None:
    """The one ``cond_shape`` shared by the conditional members (``None`` if none is)."""
    shapes = {tuple(b.cond_shape) for b in bijections if b.cond_shape is not None}
    if len(shapes) > 1:
        raise ValueError(f"{who}: conditional layers disagree on cond_shape: {sorted(shapes)}")
    return shapes.pop() if shapes else None


class Chain(AbstractBijection):
    """``f = f_n ∘ ... ∘ f_1`` for ``bijections = [f_1, ..., f_n]`` (applied in list order).

    ``log|det J_f| = Σ_i log|det J_{f_i}|``. All members share ``shape``; the condition is
    passed to every member (unconditional members ignore it), so conditional members must
    share one ``cond_shape``.
    """

    bijections: tuple[AbstractBijection, ...]
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, bijections: Sequence[AbstractBijection]):
        bijections = tuple(bijections)
        if not bijections:
            raise ValueError("Chain needs at least one bijection")
        for i, b in enumerate(bijections):
            if not isinstance(b, AbstractBijection):
                raise TypeError(f"Chain: item {i} is a {type(b).__name__}, not a bijection")
        shapes = [tuple(b.shape) for b in bijections]
        if len(set(shapes)) != 1:
            raise ValueError(f"Chain: all bijections must share one shape, got {shapes}")
        self.bijections = bijections
        self.shape = shapes[0]
        self.cond_shape = common_cond_shape(bijections, "Chain")

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        total = jnp.zeros((), x.dtype if jnp.issubdtype(x.dtype, jnp.inexact) else float)
        for b in self.bijections:
            x, ld = b.transform_and_log_det(x, condition)
            total = total + ld
        return x, total

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        total = jnp.zeros((), y.dtype if jnp.issubdtype(y.dtype, jnp.inexact) else float)
        for b in reversed(self.bijections):
            y, ld = b.inverse_and_log_det(y, condition)
            total = total + ld
        return y, total
