"""The root of every generative model and its three capability markers.

A model samples; what it can say about the density of its samples is its capability:

- :class:`AbstractExactDensity`: an exact ``log_prob`` (flows, continuous flows, diffusion
  models through their probability-flow ODE, autoregressive models). Only these give
  likelihoods, importance weights and Metropolis proposal ratios.
- :class:`AbstractDensityBound`: a stochastic lower bound ``log_prob_bound`` on ``log p(x)``
  (VAEs: ELBO, IWAE), never a density.
- :class:`AbstractImplicitModel`: a sampler only (GANs).

Functions that need ``log q(x)`` call :func:`require_density` first, which names what the
model offers instead.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax

from ._types import Array, Key, Shape


class NoDensityError(TypeError):
    """A density (``log_prob``) was asked of a model that has none (a GAN) or only a bound
    (a VAE)."""


class AbstractModel(eqx.Module):
    """A generative model on ``R^shape``.

    ``sample(key, sample_shape)`` returns draws of shape ``(*sample_shape, *shape)``.
    """

    shape: eqx.AbstractVar[Shape]

    @abc.abstractmethod
    def sample(self, key: Key, sample_shape: Shape = (), condition: Array | None = None) -> Array:
        """Draws of shape ``(*sample_shape, *shape)``."""


class AbstractExactDensity(AbstractModel):
    """Capability: the exact density ``q(x | condition)``.

    ``log_prob(x)``: ``(*batch, *shape)`` -> ``(*batch,)``;
    ``sample_and_log_prob(key, sample_shape)``: draws and their log densities at once.
    Both take ``batch_size=``: that many examples at a time, the same values.
    """

    cond_shape: eqx.AbstractVar[Shape | None]

    @abc.abstractmethod
    def log_prob(self, x: Array, condition: Array | None = None, *,
                 batch_size: int | None = None) -> Array: ...

    @abc.abstractmethod
    def sample_and_log_prob(
        self, key: Key, sample_shape: Shape = (), condition: Array | None = None, *,
        batch_size: int | None = None,
    ) -> tuple[Array, Array]: ...


class AbstractDensityBound(AbstractModel):
    """Capability: a stochastic lower bound on ``log p(x)``, never the density itself.

    ``log_prob_bound(key, x, num_samples)``: ``(*batch, *shape)`` -> ``(*batch,)``, whose
    expectation is ``≤ log p(x)``. ``log_prob`` raises :class:`NoDensityError`.
    """

    @abc.abstractmethod
    def log_prob_bound(self, key: Key, x: Array, num_samples: int = 1) -> Array: ...

    def log_prob(self, x: Array, condition: Array | None = None):
        """Always raises :class:`NoDensityError`: this model has only a bound."""
        require_density(self, "log_prob")


class AbstractImplicitModel(AbstractModel):
    """Capability: a sampler without density, ``x = G(z)``, ``z ~ p(z)``, ``G`` not invertible.

    The density of ``x`` is a push-forward onto (at most) a latent-dimensional manifold with
    no tractable (often no finite) value, so such a model cannot be scored by likelihood,
    reweighted to a Boltzmann target, or used as an independence-Metropolis proposal;
    ``log_prob`` and ``sample_and_log_prob`` raise :class:`NoDensityError` saying so.
    Concrete classes implement the single-example ``_sample(key)``; ``sample`` vmaps it.
    """

    @abc.abstractmethod
    def _sample(self, key: Key) -> Array: ...

    def sample(self, key: Key, sample_shape: Shape = (), condition: Array | None = None) -> Array:
        """Draw samples of shape ``(*sample_shape, *shape)`` (unconditional)."""
        if condition is not None:
            raise ValueError(f"{type(self).__name__} is unconditional but got a condition")
        sample_shape = tuple(sample_shape)
        out = jax.vmap(self._sample)(jax.random.split(key, math.prod(sample_shape)))
        return out.reshape(sample_shape + out.shape[1:])

    def log_prob(self, x: Array, condition: Array | None = None):
        """Always raises :class:`NoDensityError`: an implicit model has no density."""
        require_density(self, "log_prob")

    def sample_and_log_prob(self, key: Key, sample_shape: Shape = (), condition=None):
        """Always raises :class:`NoDensityError`: an implicit model has no density."""
        require_density(self, "sample_and_log_prob")


def require_density(model, what: str = "this function"):
    """Return ``model`` if it has an exact density (:class:`AbstractExactDensity`);
    otherwise raise :class:`NoDensityError` (an implicit model, a bound) or ``TypeError``
    naming what the model offers instead.

    Call it at the top of every function that needs ``log q(x)``: likelihoods, importance
    weights, independence-Metropolis proposals.
    """
    if isinstance(model, AbstractExactDensity):
        return model
    name = type(model).__name__
    if isinstance(model, AbstractImplicitModel):
        raise NoDensityError(
            f"{what} needs an exact density, but {name} is an implicit model (a sampler "
            "without density, x = G(z), as a GAN): its samples have no tractable density, "
            "so it gives no likelihood, importance weights or Metropolis proposal ratio; use "
            "sample-based metrics (physgen.metrics.precision_recall, mmd_test, "
            "energy_distances) or a model with exact log_prob (a flow)"
        )
    if isinstance(model, AbstractDensityBound):
        raise NoDensityError(
            f"{what} needs an exact density, but {name} gives only a lower bound on log p(x) "
            "(a latent-variable model such as a VAE: the marginal is an intractable "
            "integral): use log_prob_bound / physgen.metrics.test_nll_bound, or the "
            "importance-sampled log_prob_estimate"
        )
    raise TypeError(
        f"{what} needs a model with exact log_prob (an AbstractExactDensity), got {name}"
    )
