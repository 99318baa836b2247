"""Random-walk Metropolis with a Gaussian step (``blackjax.additive_step_random_walk``)."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from .._base import lazy_import
from ._adaptation import AbstractDualAveragingSampler
from ._base import EvalCounts, _step_info

blackjax = lazy_import("blackjax")


class RandomWalkMetropolis(AbstractDualAveragingSampler):
    r"""RWM: ``x' = x + σ ⊙ ξ``, ``ξ ~ N(0, I)``, accepted with ``min(1, p(x')/p(x))``.

    ``scale`` ``σ`` is a scalar or an array of shape ``event_shape`` (per-coordinate).
    Cost per transition: one energy evaluation (``init``: one), no gradients. With
    ``adapt=True`` the warm-up multiplies ``σ`` by a factor tuned by dual averaging to
    ``target_acceptance_rate`` (0.234, Roberts, Gelman & Gilks 1997), per chain.
    """

    tuned_parameter: ClassVar[str] = "scale"
    uses_gradient: ClassVar[bool] = False
    optimal_acceptance_rate: ClassVar[float] = 0.234
    tempering_exponent: ClassVar[float] = -0.5

    scale: jnp.ndarray
    adapt: bool
    target_acceptance_rate: float

    def __init__(self, scale, *, adapt: bool = True, target_acceptance_rate: float = 0.234):
        scale = jnp.asarray(scale)
        if not bool(jnp.all(scale > 0)):
            raise ValueError("RandomWalkMetropolis needs scale > 0")
        self.scale = scale
        self.adapt = bool(adapt)
        self.target_acceptance_rate = float(target_acceptance_rate)

    def _bj_init(self, position, logdensity_fn):
        return blackjax.additive_step_random_walk.init(position, logdensity_fn)

    def _bj_state(self, position, logdensity, logdensity_grad):
        del logdensity_grad
        return blackjax.mcmc.random_walk.RWState(position, logdensity)

    def _initial_params(self, position):
        if self.scale.ndim and self.scale.shape != jnp.shape(position):
            raise ValueError(
                f"RandomWalkMetropolis: scale has shape {self.scale.shape}, expected () or "
                f"the event shape {jnp.shape(position)}"
            )
        scale = jnp.broadcast_to(self.scale, jnp.shape(position))
        return {"scale": scale.astype(jnp.result_type(position))}

    def tuned_value(self):
        return self.scale

    def _bj_step(self, key, inner, logdensity_fn, params):
        scale = params["scale"]
        step = lambda k, x: scale * blackjax.mcmc.random_walk.normal(jnp.ones((), x.dtype))(k, x)
        kernel = blackjax.additive_step_random_walk.build_kernel()
        inner, info = kernel(key, inner, logdensity_fn, step)
        return inner, _step_info(info.acceptance_rate, info.is_accepted, 1, 0)

    def init_evals(self) -> EvalCounts:
        return EvalCounts(1, 0, 0)
