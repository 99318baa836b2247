"""Implicit models: samplers without a density."""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax

from .._custom_types import Array, Key, Shape


class NoDensityError(TypeError):
    """A density (``log_prob``) was asked of a model that has none (a GAN) or only a bound
    (a VAE)."""


class AbstractImplicitModel(eqx.Module):
    """A sampler without density: ``x = G(z)``, ``z ~ p(z)``, with ``G`` not invertible.

    ``sample(key, sample_shape) -> (*sample_shape, *shape)`` is all there is. The density of
    ``x`` is a push-forward onto (at most) a ``latent_dim``-dimensional manifold with no
    tractable (often no finite) value, so such a model cannot be scored by likelihood,
    reweighted to a Boltzmann target, or used as an independence-Metropolis proposal.
    ``log_prob`` and ``sample_and_log_prob`` exist only to raise :class:`NoDensityError`
    saying so. Concrete classes implement the single-example ``_sample(key)``.
    """

    shape: eqx.AbstractVar[Shape]

    @abc.abstractmethod
    def _sample(self, key: Key) -> Array: ...

    def sample(self, key: Key, sample_shape: Shape = ()) -> Array:
        """Draw samples of shape ``(*sample_shape, *shape)``."""
        sample_shape = tuple(sample_shape)
        out = jax.vmap(self._sample)(jax.random.split(key, math.prod(sample_shape)))
        return out.reshape(sample_shape + out.shape[1:])

    def _no_density(self, what):
        raise NoDensityError(
            f"{type(self).__name__} is an implicit model (a sampler without density): "
            f"{what} does not exist. Its samples x = G(z) have no tractable density, so it "
            "cannot give a likelihood, importance weights (physgen.reweighting) or a "
            "Metropolis proposal ratio; use sample-based metrics (physgen.metrics."
            "precision_recall, mmd_test, energy_distances) or a model with exact log_prob "
            "(a flow, an autoregressive model)."
        )

    def log_prob(self, x: Array, condition=None):
        """Always raises :class:`NoDensityError`: an implicit model has no density."""
        self._no_density("log_prob")

    def sample_and_log_prob(self, key: Key, sample_shape: Shape = (), condition=None):
        """Always raises :class:`NoDensityError`: an implicit model has no density."""
        self._no_density("sample_and_log_prob")
