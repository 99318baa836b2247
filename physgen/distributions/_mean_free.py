"""The Gaussian on the subspace of zero centre of mass, the base of particle flows."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key, Scalar, Shape
from ._base import AbstractDistribution

_LOG_2PI = math.log(2.0 * math.pi)


def remove_mean(x: Array) -> Array:
    """``x - x̄``: subtract the centre of mass over the particle axis.

    ``x``: ``(*batch, n_particles, n_dims)`` -> the same shape, ``Σ_i x_i = 0`` per example.
    """
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"remove_mean needs (..., n_particles, n_dims), got shape {x.shape}")
    return x - jnp.mean(x, axis=-2, keepdims=True)


class MeanFreeNormal(AbstractDistribution):
    r"""``N(0, σ² I)`` on the subspace ``{x ∈ R^{n×d}: Σ_i x_i = 0}`` of dimension
    ``(n - 1)·d`` (Köhler et al. 2020; Garcia Satorras et al. 2021).

    Sampling draws ``ε ~ N(0, σ² I_{n·d})`` and removes its mean over particles: the
    orthogonal projection, which in orthonormal coordinates ``u`` of the subspace is
    ``u ~ N(0, σ² I_{(n-1)d})``. So the density w.r.t. the subspace's Lebesgue measure is

    .. math:: \log p(x) = -\frac{|x|^2}{2σ^2} - \frac{(n-1)d}{2}\log(2πσ^2),

    the normaliser counting ``(n - 1)·d`` dimensions, not ``n·d``. ``log_prob`` evaluates it
    at the projection ``x - x̄`` of its argument: the density of ``x``'s class modulo
    translations, which makes a flow built on this base translation invariant. Shape
    ``(n_particles, n_dims)``; ``n_particles >= 2``.
    """

    scale: float
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(self, shape: Shape, scale: float = 1.0):
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or shape[0] < 2 or shape[1] < 1:
            raise ValueError(
                f"MeanFreeNormal needs shape (n_particles >= 2, n_dims >= 1), got {shape}"
            )
        if not scale > 0:
            raise ValueError(f"MeanFreeNormal needs scale > 0, got {scale}")
        self.shape = shape
        self.scale = float(scale)
        self.cond_shape = None

    @property
    def dim(self) -> int:
        """``(n_particles - 1) · n_dims``, the dimension of the zero-COM subspace."""
        return (self.shape[0] - 1) * self.shape[1]

    def _log_prob(self, x: Array, condition=None) -> Scalar:
        z = remove_mean(x) / self.scale
        return -0.5 * jnp.sum(z * z) - self.dim * (math.log(self.scale) + 0.5 * _LOG_2PI)

    def _sample(self, key: Key, condition=None) -> Array:
        eps = jax.random.normal(key, self.shape, dtype=jnp.result_type(float))
        return self.scale * remove_mean(eps)

    def _sample_and_log_prob(self, key: Key, condition=None):
        x = self._sample(key)
        return x, self._log_prob(x)
