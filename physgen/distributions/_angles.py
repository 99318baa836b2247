"""A base distribution for coordinates of which some are angles (torsions)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, Key, Scalar, Shape
from ._base import AbstractDistribution

_LOG_2PI = math.log(2.0 * math.pi)


class NormalWithAngles(AbstractDistribution):
    r"""``N(0, 1)`` on the real entries and uniform on the circle on the angle entries:

    .. math::
        \log p(x) = -\tfrac12 \sum_{i \notin A} x_i^2 - \tfrac{n - |A|}{2} \log 2π
                    - |A| \log 2π,

    ``A`` the entries where ``angles`` (a bool mask of shape ``shape``) is True. Angles are
    points of the circle: samples lie in ``[-π, π)`` and ``log_prob`` reads any real angle
    mod ``2π`` (the density of a flow of
    :class:`~physgen.bijections.CircularSplineTransformer` couplings, e.g. over the
    internal coordinates of a molecule). Unconditional.
    """

    angle_idx: tuple[int, ...] = eqx.field(static=True)
    real_idx: tuple[int, ...] = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, shape: Shape, angles: ArrayLike):
        self.shape = tuple(shape)
        mask = np.asarray(angles)
        if mask.dtype != bool or mask.shape != self.shape:
            raise ValueError(f"angles must be a bool mask of shape {self.shape}, got dtype "
                             f"{mask.dtype} and shape {mask.shape}")
        flat = mask.reshape(-1)
        self.angle_idx = tuple(int(i) for i in np.flatnonzero(flat))
        self.real_idx = tuple(int(i) for i in np.flatnonzero(~flat))
        self.cond_shape = None

    def _log_prob(self, x: Array, condition=None) -> Scalar:
        real = x.reshape(-1)[np.array(self.real_idx, dtype=int)]
        n = x.size
        return -0.5 * jnp.sum(real**2) - 0.5 * (n + len(self.angle_idx)) * _LOG_2PI

    def _sample(self, key: Key, condition=None) -> Array:
        k_normal, k_uniform = jax.random.split(key)
        dtype = jnp.result_type(float)
        x = jax.random.normal(k_normal, (math.prod(self.shape),), dtype)
        phi = jax.random.uniform(k_uniform, (len(self.angle_idx),), dtype, -jnp.pi, jnp.pi)
        return x.at[np.array(self.angle_idx, dtype=int)].set(phi).reshape(self.shape)

    def _sample_and_log_prob(self, key: Key, condition=None):
        x = self._sample(key)
        return x, self._log_prob(x)
