"""Gaussian base distributions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._base import Array, Key, Scalar, Shape
from ..bijections._constraints import inv_positive, positive
from ._base import AbstractDistribution

_LOG_2PI = math.log(2.0 * math.pi)


class StandardNormal(AbstractDistribution):
    """``N(0, I)`` on ``R^shape``: ``log p(x) = -½|x|² - ½ n log 2π``."""

    shape: Shape
    cond_shape: Shape | None = None

    def __init__(self, shape: Shape):
        self.shape = tuple(shape)
        self.cond_shape = None

    def _log_prob(self, x: Array, condition=None) -> Scalar:
        return -0.5 * jnp.sum(x**2) - 0.5 * x.size * _LOG_2PI

    def _sample(self, key: Key, condition=None) -> Array:
        return jax.random.normal(key, self.shape, dtype=jnp.result_type(float))

    def _sample_and_log_prob(self, key: Key, condition=None):
        x = self._sample(key)
        return x, self._log_prob(x)


class DiagNormal(AbstractDistribution):
    """``N(loc, diag(scale²))``; ``scale = softplus(raw_scale)`` keeps it positive."""

    loc: Array
    raw_scale: Array
    shape: Shape
    cond_shape: Shape | None = None

    def __init__(self, loc: Array, scale: Array):
        loc = jnp.asarray(loc, dtype=jnp.result_type(float))
        scale = jnp.broadcast_to(jnp.asarray(scale, dtype=loc.dtype), loc.shape)
        if not bool(jnp.all(scale > 0)):
            raise ValueError("DiagNormal needs strictly positive scales")
        self.loc = loc
        self.raw_scale = inv_positive(scale)
        self.shape = loc.shape
        self.cond_shape = None

    @property
    def scale(self) -> Array:
        return positive(self.raw_scale)

    def _log_prob(self, x: Array, condition=None) -> Scalar:
        s = self.scale
        z = (x - self.loc) / s
        return -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(s)) - 0.5 * x.size * _LOG_2PI

    def _sample(self, key: Key, condition=None) -> Array:
        return self.loc + self.scale * jax.random.normal(key, self.shape, self.loc.dtype)

    def _sample_and_log_prob(self, key: Key, condition=None):
        x = self._sample(key)
        return x, self._log_prob(x)
