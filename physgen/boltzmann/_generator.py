"""A Boltzmann generator: a flow paired with the target it is meant to sample."""

from __future__ import annotations

import equinox as eqx
import jax

from .._custom_types import Array, Key
from ..distributions._base import AbstractDistribution
from ..targets._base import AbstractTarget


class BoltzmannGenerator(eqx.Module):
    """A model ``q`` (any distribution with exact ``log_prob``, e.g. a flow) for the Boltzmann
    distribution ``p(x) = exp(-βE(x)) / Z`` of ``target`` (Noé et al. 2019).

    ``sample_and_log_weights(key, n)`` returns ``x ~ q`` of shape ``(n, *event_shape)`` and the
    log importance weights ``log w = -βE(x) - log q(x)``, shape ``(n,)``, which make any
    estimate exact in the limit (see :mod:`physgen.reweighting`). The shapes of ``model`` and
    ``target`` are checked at construction.
    """

    model: AbstractDistribution
    target: AbstractTarget

    def __init__(self, model: AbstractDistribution, target: AbstractTarget):
        self.model = model
        self.target = target

    def __check_init__(self):
        if tuple(self.model.shape) != tuple(self.target.event_shape):
            raise ValueError(
                f"the model samples shape {tuple(self.model.shape)} but the target "
                f"{type(self.target).__name__} has event_shape {tuple(self.target.event_shape)}"
            )

    def sample_and_log_weights(self, key: Key, num_samples: int) -> tuple[Array, Array]:
        x, log_q = self.model.sample_and_log_prob(key, (num_samples,))
        return x, jax.vmap(self.target.log_density)(x) - log_q
