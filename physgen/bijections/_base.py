"""The bijection interface: an invertible map with a tractable log-Jacobian, on ONE example."""

from __future__ import annotations

import abc

import equinox as eqx

from .._base import Array, Scalar, Shape


class AbstractBijection(eqx.Module):
    """An invertible map ``y = f(x; condition)`` acting on a single example.

    ``x`` and ``y`` have shape ``shape``; ``condition`` (if ``cond_shape`` is not ``None``)
    has shape ``cond_shape``. Batch with ``jax.vmap``.

    ``transform_and_log_det(x) -> (y, log|det ∂y/∂x|)``,
    ``inverse_and_log_det(y) -> (x, log|det ∂x/∂y|)``; the two log-dets are negatives of
    each other at corresponding points.
    """

    shape: eqx.AbstractVar[Shape]
    cond_shape: eqx.AbstractVar[Shape | None]

    @abc.abstractmethod
    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        """Forward map and ``log|det J_f(x)|`` (a scalar)."""

    @abc.abstractmethod
    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        """Inverse map and ``log|det J_{f^{-1}}(y)|`` (a scalar)."""

    def transform(self, x: Array, condition: Array | None = None) -> Array:
        return self.transform_and_log_det(x, condition)[0]

    def inverse(self, y: Array, condition: Array | None = None) -> Array:
        return self.inverse_and_log_det(y, condition)[0]
