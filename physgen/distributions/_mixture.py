"""Mixture of diagonal Gaussians."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._base import Array, Key, Scalar, Shape
from ..bijections._constraints import inv_positive, positive
from ._base import AbstractDistribution

_LOG_2PI = math.log(2.0 * math.pi)


class GaussianMixture(AbstractDistribution):
    """``p(x) = Σ_k w_k N(x; μ_k, diag σ_k²)`` on ``R^d``.

    ``means``: ``(K, d)``; ``scales``: ``(K, d)`` or broadcastable, positive (stored through
    softplus); ``weights``: ``(K,)`` positive, normalised internally (stored as logits).
    """

    means: Array
    raw_scales: Array
    logits: Array
    shape: Shape
    cond_shape: Shape | None = None

    def __init__(self, means: Array, scales: Array, weights: Array | None = None):
        means = jnp.asarray(means, dtype=jnp.result_type(float))
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {means.shape}")
        k, _ = means.shape
        scales = jnp.broadcast_to(jnp.asarray(scales, means.dtype), means.shape)
        if not bool(jnp.all(scales > 0)):
            raise ValueError("GaussianMixture needs strictly positive scales")
        weights = jnp.ones(k, means.dtype) if weights is None else jnp.asarray(weights, means.dtype)
        if weights.shape != (k,) or not bool(jnp.all(weights > 0)):
            raise ValueError(f"weights must be {k} positive numbers, got {weights}")
        self.means = means
        self.raw_scales = inv_positive(scales)
        self.logits = jnp.log(weights / jnp.sum(weights))
        self.shape = (means.shape[1],)
        self.cond_shape = None

    @property
    def scales(self) -> Array:
        return positive(self.raw_scales)

    @property
    def weights(self) -> Array:
        return jax.nn.softmax(self.logits)

    def _component_log_probs(self, x):
        s = self.scales
        z = (x - self.means) / s
        return (
            -0.5 * jnp.sum(z**2, -1) - jnp.sum(jnp.log(s), -1) - 0.5 * x.size * _LOG_2PI
        )

    def _log_prob(self, x: Array, condition=None) -> Scalar:
        return jax.nn.logsumexp(self._component_log_probs(x) + jax.nn.log_softmax(self.logits))

    def _sample(self, key: Key, condition=None) -> Array:
        k1, k2 = jax.random.split(key)
        c = jax.random.categorical(k1, self.logits)
        eps = jax.random.normal(k2, self.shape, self.means.dtype)
        return self.means[c] + self.scales[c] * eps

    def _sample_and_log_prob(self, key: Key, condition=None):
        x = self._sample(key)
        return x, self._log_prob(x)
