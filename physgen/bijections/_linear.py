"""Invertible linear map in LU form (Glow's invertible 1x1 convolution)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from .._base import Array, ArrayLike, Scalar, Shape
from ._base import AbstractBijection
from ._constraints import inv_positive, positive
from ._utils import as_shape, check_inputs


class LULinear(AbstractBijection):
    """``y = P L U x`` on vectors of shape ``(dim,)`` (Kingma & Dhariwal 2018).

    ``P`` is a fixed permutation (identity unless ``permutation`` is given; not trained),
    ``L`` unit lower-triangular (free strict-lower entries), ``U`` upper-triangular with
    diagonal ``positive(raw_diag) > 0`` (softplus). ``log|det| = sum(log diag U)``.
    The inverse uses two triangular solves. The identity at initialisation (if ``P = I``).
    """

    lower: Array  # (dim, dim); only the strictly lower part is used
    upper: Array  # (dim, dim); only the strictly upper part is used
    raw_diag: Array  # (dim,)
    permutation: Array  # (dim,) int: (P x)_i = x[permutation[i]]
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, shape: Shape | int, permutation: ArrayLike | None = None):
        shape = as_shape(shape)
        if len(shape) != 1 or shape[0] < 1:
            raise ValueError(f"LULinear acts on vectors: shape must be (dim,), got {shape}")
        dim = shape[0]
        if permutation is None:
            perm = np.arange(dim)
        else:
            perm = np.asarray(permutation)
            if perm.shape != (dim,) or not np.array_equal(np.sort(perm), np.arange(dim)):
                raise ValueError(
                    f"LULinear: permutation must be a permutation of 0..{dim - 1}, got "
                    f"{perm.tolist()}"
                )
        self.lower = jnp.zeros((dim, dim))
        self.upper = jnp.zeros((dim, dim))
        self.raw_diag = jnp.full((dim,), inv_positive(1.0))
        self.permutation = jnp.asarray(perm, dtype=jnp.int32)
        self.shape = shape
        self.cond_shape = None

    def _factors(self):
        dim = self.shape[0]
        eye = jnp.eye(dim, dtype=self.lower.dtype)
        lower = jnp.tril(self.lower, k=-1) + eye
        diag = positive(self.raw_diag)
        upper = jnp.triu(self.upper, k=1) + jnp.diag(diag)
        return lower, upper, diag

    @property
    def matrix(self) -> Array:
        """The weight matrix ``W = P L U`` (``(dim, dim)``)."""
        lower, upper, _ = self._factors()
        return (lower @ upper)[self.permutation]

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        x = check_inputs(self, x, condition)
        lower, upper, diag = self._factors()
        y = (lower @ (upper @ x))[self.permutation]
        return y, jnp.sum(jnp.log(diag))

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        y = check_inputs(self, y, condition, "y")
        lower, upper, diag = self._factors()
        z = jnp.zeros_like(y).at[self.permutation].set(y)  # P^T y
        z = solve_triangular(lower, z, lower=True, unit_diagonal=True)
        x = solve_triangular(upper, z, lower=False)
        return x, -jnp.sum(jnp.log(diag))
