"""Activation normalisation (Glow): a per-feature affine map with data-dependent init."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._base import Array, Scalar, Shape
from ._affine import Affine
from ._base import AbstractBijection
from ._constraints import inv_positive
from ._utils import as_shape


class ActNorm(AbstractBijection):
    """``y = loc + scale * x`` with one ``(loc, scale)`` per entry of ``shape``.

    An identity-initialised :class:`Affine` (held, not re-implemented): ``log|det| =
    sum(log scale)``. :func:`actnorm_init` sets ``loc``/``scale`` so a data batch comes out
    with zero mean and unit variance per feature (Kingma & Dhariwal 2018). Unconditional.
    """

    affine: Affine
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, shape: Shape):
        shape = as_shape(shape)
        self.affine = Affine(jnp.zeros(shape), jnp.ones(shape))
        self.shape = shape
        self.cond_shape = None

    @property
    def loc(self) -> Array:
        return self.affine.loc

    @property
    def scale(self) -> Array:
        return self.affine.scale

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        return self.affine.transform_and_log_det(x, condition)

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        return self.affine.inverse_and_log_det(y, condition)


def actnorm_init(bijection: ActNorm, data: Array, eps: float = 1e-6) -> ActNorm:
    """Glow's data-dependent initialisation: return ``bijection`` with
    ``scale = 1 / (std + eps)`` and ``loc = -mean * scale`` over the batch ``data``
    (shape ``(n, *shape)``), so ``bijection`` maps ``data`` to zero mean, unit variance.
    """
    if not isinstance(bijection, ActNorm):
        raise TypeError(f"actnorm_init expects an ActNorm, got {type(bijection).__name__}")
    data = jnp.asarray(data)
    if data.ndim != len(bijection.shape) + 1 or data.shape[1:] != bijection.shape:
        raise ValueError(
            f"actnorm_init: data has shape {data.shape}, expected (n, *{bijection.shape})"
        )
    if data.shape[0] < 2:
        raise ValueError(f"actnorm_init needs at least 2 examples, got {data.shape[0]}")
    dtype = bijection.loc.dtype
    scale = 1.0 / (jnp.std(data, axis=0) + eps)
    loc = -jnp.mean(data, axis=0) * scale
    return eqx.tree_at(
        lambda b: (b.affine.loc, b.affine.raw_scale),
        bijection,
        (loc.astype(dtype), inv_positive(scale).astype(dtype)),
    )
