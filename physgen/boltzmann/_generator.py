"""A Boltzmann generator: a flow paired with the target it is meant to sample."""

from __future__ import annotations

import equinox as eqx
import jax

from .._base import AbstractExactDensity, Array, Key, require_density
from ..parallel._mesh import batch_sharding, check_mesh
from ..targets._base import AbstractTarget


class BoltzmannGenerator(eqx.Module):
    """A model ``q`` (any distribution with exact ``log_prob``, e.g. a flow) for the Boltzmann
    distribution ``p(x) = exp(-βE(x)) / Z`` of ``target`` (Noé et al. 2019).

    ``sample_and_log_weights(key, n)`` returns ``x ~ q`` of shape ``(n, *event_shape)`` and the
    log importance weights ``log w = -βE(x) - log q(x)``, shape ``(n,)``, which make any
    estimate exact in the limit (see :mod:`physgen.reweighting`). The shapes of ``model`` and
    ``target`` are checked at construction. With ``mesh=`` the samples are drawn, pushed
    through the flow and weighted on all the mesh's devices, split along the sample axis;
    the values are those of one device.
    """

    model: AbstractExactDensity
    target: AbstractTarget

    def __init__(self, model: AbstractExactDensity, target: AbstractTarget):
        self.model = require_density(model, "BoltzmannGenerator (importance weights p/q)")
        self.target = target

    def __check_init__(self):
        if tuple(self.model.shape) != tuple(self.target.event_shape):
            raise ValueError(
                f"the model samples shape {tuple(self.model.shape)} but the target "
                f"{type(self.target).__name__} has event_shape {tuple(self.target.event_shape)}"
            )

    def sample_and_log_weights(
        self, key: Key, num_samples: int, *, batch_size: int | None = None,
        mesh: jax.sharding.Mesh | None = None,
    ) -> tuple[Array, Array]:
        """``x ~ q``, ``(num_samples, *event_shape)``, and ``log w = -βE(x) - log q(x)``,
        ``(num_samples,)``; ``batch_size`` samples at a time (same values, memory for one
        batch), split over ``mesh`` (``num_samples`` divisible by its size)."""
        if mesh is None:
            return _sample_and_log_weights(self, key, num_samples, batch_size, None)
        check_mesh(mesh, num_samples, "num_samples")
        return _sharded_sample_and_log_weights(self, key, num_samples, batch_size, mesh)


def _sample_and_log_weights(bg: BoltzmannGenerator, key, num_samples, batch_size, sharding):
    x, log_q = bg.model.sample_and_log_prob(key, (num_samples,), batch_size=batch_size)
    if sharding is not None:
        x = jax.lax.with_sharding_constraint(x, sharding)
        log_q = jax.lax.with_sharding_constraint(log_q, sharding)
    if batch_size is None:
        log_p = jax.vmap(bg.target.log_density)(x)
    else:
        log_p = jax.lax.map(bg.target.log_density, x, batch_size=batch_size)
    log_w = log_p - log_q
    if sharding is not None:
        log_w = jax.lax.with_sharding_constraint(log_w, sharding)
    return x, log_w


@eqx.filter_jit
def _sharded_sample_and_log_weights(bg, key, num_samples, batch_size, mesh):
    return _sample_and_log_weights(bg, key, num_samples, batch_size, batch_sharding(mesh))
