"""Metropolis-adjusted Langevin algorithm (``blackjax.mala``)."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from .._base import lazy_import
from ._adaptation import AbstractDualAveragingSampler
from ._base import EvalCounts, _step_info

blackjax = lazy_import("blackjax")


class MALA(AbstractDualAveragingSampler):
    r"""MALA: ``x' = x + ε ∇log p(x) + √(2ε) ξ``, accepted with the asymmetric MH ratio.

    Cost per transition: one energy+gradient evaluation at ``x'`` (``init``: one). With
    ``adapt=True`` the warm-up tunes ``ε`` by dual averaging to ``target_acceptance_rate``
    (0.574, Roberts & Rosenthal 1998), per chain.
    """

    tuned_parameter: ClassVar[str] = "step_size"
    uses_gradient: ClassVar[bool] = True
    optimal_acceptance_rate: ClassVar[float] = 0.574
    tempering_exponent: ClassVar[float] = -1.0  # ε is a diffusion time

    step_size: float
    adapt: bool
    target_acceptance_rate: float

    def __init__(self, step_size: float, *, adapt: bool = True,
                 target_acceptance_rate: float = 0.574):
        if not step_size > 0:
            raise ValueError(f"MALA needs step_size > 0, got {step_size}")
        self.step_size = float(step_size)
        self.adapt = bool(adapt)
        self.target_acceptance_rate = float(target_acceptance_rate)

    def _bj_init(self, position, logdensity_fn):
        return blackjax.mala.init(position, logdensity_fn)

    def _bj_state(self, position, logdensity, logdensity_grad):
        return blackjax.mcmc.mala.MALAState(position, logdensity, logdensity_grad)

    def _initial_params(self, position):
        return {"step_size": jnp.asarray(self.step_size, jnp.result_type(position))}

    def tuned_value(self):
        return self.step_size

    def _bj_step(self, key, inner, logdensity_fn, params):
        inner, info = blackjax.mala.build_kernel()(key, inner, logdensity_fn, params["step_size"])
        return inner, _step_info(info.acceptance_rate, info.is_accepted, 1, 1)

    def init_evals(self) -> EvalCounts:
        return EvalCounts(1, 1, 0)
