"""Isotropic Gaussian mixtures, including the 40-mode 2-D benchmark of FAB."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, Key, Scalar, Shape, check_single_example
from ._base import AbstractExactTarget


class GaussianMixture(AbstractExactTarget):
    r"""``E(x) = -log Σ_i w_i N(x; μ_i, σ_i² I)`` (a normalised density), ``event_shape = (d,)``.

    ``means`` ``(K, d)``, ``scales`` ``(K,)`` (standard deviations ``σ_i > 0``), ``weights``
    ``(K,)`` (non-negative; normalised here). Because the energy is a normalised log density,
    ``log_Z = 0`` exactly at ``β = 1``. At ``β ≠ 1`` (``exp(-βE) = p^β``) there is no closed
    form: the target still works for sampling/training, but ``log_Z``, ``references`` and
    ``sample_exact`` raise ``ValueError``.
    """

    event_shape: Shape = eqx.field(static=True)
    means: Array
    scales: Array
    log_weights: Array
    beta: float

    def __init__(self, means: ArrayLike, scales: ArrayLike, weights: ArrayLike | None = None,
                 beta: float = 1.0):
        means_np = np.asarray(means, dtype=np.float64)
        if means_np.ndim != 2:
            raise ValueError(f"GaussianMixture: means must have shape (K, d), got {means_np.shape}")
        k, d = means_np.shape
        scales_np = np.broadcast_to(np.asarray(scales, dtype=np.float64), (k,))
        weights_np = (np.full((k,), 1.0 / k) if weights is None
                      else np.asarray(weights, dtype=np.float64))
        if weights_np.shape != (k,):
            raise ValueError(f"GaussianMixture: weights must have shape {(k,)}, "
                             f"got {weights_np.shape}")
        if np.any(scales_np <= 0) or np.any(weights_np < 0) or weights_np.sum() <= 0:
            raise ValueError("GaussianMixture: scales must be > 0 and weights >= 0, not all 0")
        with np.errstate(divide="ignore"):
            log_w = np.log(weights_np / weights_np.sum())
        self.event_shape = (d,)
        self.means = jnp.asarray(means_np)
        self.scales = jnp.asarray(scales_np)
        self.log_weights = jnp.asarray(log_w)
        self.beta = float(beta)

    def __check_init__(self):
        if not self.beta > 0:
            raise ValueError(f"GaussianMixture needs beta > 0, got beta={self.beta}")

    def energy(self, x: Array) -> Scalar:
        """``-log p(x)`` for one ``x`` of shape ``(d,)`` -> scalar."""
        check_single_example(x, self.event_shape, "GaussianMixture.energy: x")
        d = self.event_shape[0]
        sq = jnp.sum((x[None, :] - self.means) ** 2, axis=-1)
        log_comp = (self.log_weights - 0.5 * sq / self.scales**2
                    - d * jnp.log(self.scales) - 0.5 * d * math.log(2.0 * math.pi))
        return -jax.scipy.special.logsumexp(log_comp)

    def _require_beta_one(self, what: str) -> None:
        if self.beta != 1.0:
            raise ValueError(f"GaussianMixture.{what} is exact only at beta = 1, "
                             f"got beta={self.beta}")

    def log_Z(self) -> float:
        """``0`` (the energy is a normalised ``-log p``); ``β ≠ 1`` raises ``ValueError``."""
        self._require_beta_one("log_Z")
        return 0.0

    def mean(self) -> Array:
        """Mixture mean ``Σ w_i μ_i``, shape ``(d,)`` (``β = 1``)."""
        self._require_beta_one("mean")
        return jnp.exp(self.log_weights) @ self.means

    def covariance(self) -> Array:
        """Mixture covariance ``Σ w_i (σ_i² I + μ_i μ_iᵀ) - m mᵀ``, shape ``(d, d)``."""
        self._require_beta_one("covariance")
        w = jnp.exp(self.log_weights)
        m = w @ self.means
        d = self.event_shape[0]
        second = jnp.einsum("k,ki,kj->ij", w, self.means, self.means)
        return second + jnp.sum(w * self.scales**2) * jnp.eye(d) - jnp.outer(m, m)

    def references(self) -> dict[str, float]:
        """``log_Z = 0`` and ``n_components``; array moments via :meth:`mean`/:meth:`covariance`."""
        return dict(log_Z=self.log_Z(), n_components=float(self.means.shape[0]))

    def component_index(self, x: Array) -> Array:
        """Most responsible component ``argmax_i w_i N(x; μ_i, σ_i²)`` for one ``x`` -> int."""
        check_single_example(x, self.event_shape, "GaussianMixture.component_index: x")
        d = self.event_shape[0]
        sq = jnp.sum((x[None, :] - self.means) ** 2, axis=-1)
        return jnp.argmax(self.log_weights - 0.5 * sq / self.scales**2 - d * jnp.log(self.scales))

    def sample_exact(self, key: Key, n: int) -> Array:
        """``n`` exact samples (component, then Gaussian), shape ``(n, d)``; ``β = 1`` only."""
        self._require_beta_one("sample_exact")
        kc, kz = jax.random.split(key)
        comp = jax.random.categorical(kc, self.log_weights, shape=(n,))
        z = jax.random.normal(kz, (n,) + self.event_shape, self.means.dtype)
        return self.means[comp] + self.scales[comp, None] * z


def fab_gmm40(key: Key, *, dim: int = 2, n_modes: int = 40, loc_scaling: float = 40.0,
              scale: float = 1.0) -> GaussianMixture:
    """The 40-mode mixture of Midgley et al. (2023, FAB): means uniform in
    ``[-loc_scaling, loc_scaling]^dim``, equal weights, isotropic ``scale`` (FAB's code uses
    ``softplus(1) ≈ 1.313``; pass that to reproduce it exactly). ``log_Z = 0``."""
    means = jax.random.uniform(key, (n_modes, dim), minval=-loc_scaling, maxval=loc_scaling)
    return GaussianMixture(np.asarray(means), np.full((n_modes,), scale))
