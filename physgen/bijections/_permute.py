"""Fixed permutations of the entries of one example."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, Scalar, Shape
from ._base import AbstractBijection
from ._utils import as_shape, check_inputs


class Permute(AbstractBijection):
    """``y = x[permutation]`` on a vector of shape ``(len(permutation),)``; ``log|det| = 0``.

    ``permutation`` is stored as an int array (not trainable). Unconditional.
    """

    permutation: Array
    inverse_permutation: Array
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, permutation: ArrayLike):
        perm = np.asarray(permutation)
        if perm.ndim != 1 or not np.issubdtype(perm.dtype, np.integer):
            raise ValueError(
                f"Permute: permutation must be a 1-D int array, got shape {perm.shape} and "
                f"dtype {perm.dtype}"
            )
        if not np.array_equal(np.sort(perm), np.arange(perm.size)):
            raise ValueError(
                f"Permute: {perm.tolist()} is not a permutation of 0..{perm.size - 1}"
            )
        self.permutation = jnp.asarray(perm, dtype=jnp.int32)
        self.inverse_permutation = jnp.asarray(np.argsort(perm), dtype=jnp.int32)
        self.shape = (perm.size,)
        self.cond_shape = None

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        return x[self.permutation], jnp.zeros((), _float(x))

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        return y[self.inverse_permutation], jnp.zeros((), _float(y))


class Reverse(AbstractBijection):
    """Reverse the order of all entries (``jnp.flip`` over every axis); ``log|det| = 0``."""

    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, shape: Shape):
        self.shape = as_shape(shape)
        self.cond_shape = None

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        return jnp.flip(x), jnp.zeros((), _float(x))

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        return jnp.flip(y), jnp.zeros((), _float(y))


def _float(x):
    return x.dtype if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.result_type(float)
