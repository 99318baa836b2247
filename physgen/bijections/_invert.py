"""The inverse of a bijection as a bijection."""

from __future__ import annotations

import equinox as eqx

from .._base import Array, Scalar, Shape
from ._base import AbstractBijection


class Invert(AbstractBijection):
    """``f^{-1}`` as a bijection: its ``transform`` is ``bijection.inverse`` and vice versa.

    ``Invert(MaskedAutoregressive(...))`` is an inverse autoregressive flow (IAF).
    """

    bijection: AbstractBijection
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, bijection: AbstractBijection):
        if not isinstance(bijection, AbstractBijection):
            raise TypeError(f"Invert expects a bijection, got {type(bijection).__name__}")
        self.bijection = bijection
        self.shape = bijection.shape
        self.cond_shape = bijection.cond_shape

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        return self.bijection.inverse_and_log_det(x, condition)

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        return self.bijection.transform_and_log_det(y, condition)
