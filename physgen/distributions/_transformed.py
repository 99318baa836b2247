"""Push-forward of a base distribution through a bijection (a normalizing flow)."""

from __future__ import annotations

from .._base import Array, Key, Scalar, Shape
from ..bijections._base import AbstractBijection
from ._base import AbstractDistribution


class Transformed(AbstractDistribution):
    """``y = f(x)``, ``x ~ base``: ``log q(y) = log p_base(f⁻¹(y)) + log|det J_{f⁻¹}(y)|``.

    ``sample_and_log_prob`` uses only the forward direction:
    ``log q(y) = log p_base(x) - log|det J_f(x)|``.
    A condition, if any, is passed to the bijection (the base is unconditional).
    """

    base: AbstractDistribution
    bijection: AbstractBijection
    shape: Shape
    cond_shape: Shape | None

    def __init__(self, base: AbstractDistribution, bijection: AbstractBijection):
        self.base = base
        self.bijection = bijection
        self.shape = base.shape
        self.cond_shape = bijection.cond_shape

    def __check_init__(self):
        if tuple(self.base.shape) != tuple(self.bijection.shape):
            raise ValueError(
                f"base distribution has shape {self.base.shape} but the bijection acts on "
                f"shape {self.bijection.shape}"
            )
        if self.base.cond_shape is not None:
            raise ValueError("Transformed needs an unconditional base distribution")

    def _log_prob(self, x: Array, condition=None) -> Scalar:
        z, ld = self.bijection.inverse_and_log_det(x, condition)
        return self.base._log_prob(z) + ld

    def _sample(self, key: Key, condition=None) -> Array:
        return self.bijection.transform(self.base._sample(key), condition)

    def _sample_and_log_prob(self, key: Key, condition=None):
        z, lp = self.base._sample_and_log_prob(key)
        y, ld = self.bijection.transform_and_log_det(z, condition)
        return y, lp - ld
