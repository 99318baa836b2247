"""The No-U-Turn sampler (``blackjax.nuts``, multinomial, iterative) with window adaptation."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from .._base import lazy_import
from ._adaptation import window_adapt
from ._base import AbstractKernelSampler, EvalCounts, _burn_in, _step_info
from ._hmc import _initial_imm

blackjax = lazy_import("blackjax")


class NUTS(AbstractKernelSampler):
    r"""NUTS: trajectories doubled until a U-turn (at most ``2^max_num_doublings`` steps).

    Cost per transition: ``info.num_integration_steps`` energy+gradient evaluations (read
    from BlackJAX, varies per step); ``init``: one. ``step_size=None`` starts the warm-up at
    ``ε = 1`` and needs ``adapt=True``. Warm-up: BlackJAX's Stan window adaptation of ``ε``
    and the (diagonal or dense) inverse mass matrix, per chain under ``vmap``.
    """

    tuned_parameter: ClassVar[str] = "step_size"
    uses_gradient: ClassVar[bool] = True
    optimal_acceptance_rate: ClassVar[float] = 0.65  # Hoffman & Gelman (2014)
    tempering_exponent: ClassVar[float] = -0.5

    step_size: float | None
    inverse_mass_matrix: jnp.ndarray | None
    max_num_doublings: int
    adapt: bool
    target_acceptance_rate: float
    divergence_threshold: float

    def __init__(self, step_size: float | None = None, inverse_mass_matrix=None, *,
                 max_num_doublings: int = 10, adapt: bool = True,
                 target_acceptance_rate: float = 0.8, divergence_threshold: float = 1000.0):
        if step_size is None and not adapt:
            raise ValueError("NUTS(step_size=None) needs adapt=True to find a step size")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"NUTS needs step_size > 0, got {step_size}")
        self.step_size = None if step_size is None else float(step_size)
        self.inverse_mass_matrix = (
            None if inverse_mass_matrix is None else jnp.asarray(inverse_mass_matrix)
        )
        self.max_num_doublings = int(max_num_doublings)
        self.adapt = bool(adapt)
        self.target_acceptance_rate = float(target_acceptance_rate)
        self.divergence_threshold = float(divergence_threshold)

    def _bj_init(self, position, logdensity_fn):
        return blackjax.nuts.init(position, logdensity_fn)

    def _bj_state(self, position, logdensity, logdensity_grad):
        return blackjax.mcmc.hmc.HMCState(position, logdensity, logdensity_grad)

    def _initial_params(self, position):
        dtype = jnp.result_type(position)
        return {
            "step_size": jnp.asarray(self.tuned_value(), dtype),
            "inverse_mass_matrix": _initial_imm(self.inverse_mass_matrix, position),
        }

    def tuned_value(self):
        return 1.0 if self.step_size is None else self.step_size

    def _bj_step(self, key, inner, logdensity_fn, params):
        kernel = blackjax.nuts.build_kernel(divergence_threshold=self.divergence_threshold)
        inner, info = kernel(key, inner, logdensity_fn, params["step_size"],
                             params["inverse_mass_matrix"], self.max_num_doublings)
        n = info.num_integration_steps
        return inner, _step_info(info.acceptance_rate, True, n, n)

    def init_evals(self) -> EvalCounts:
        return EvalCounts(1, 1, 0)

    def transition_evals(self) -> None:
        """``None``: the trajectory length, and so the cost, varies from step to step."""
        return None

    def warmup_overhead_evals(self) -> int:
        """Window adaptation restarts the chain once (one evaluation); burn-in does not."""
        return 1 if self.adapt else 0

    def warmup(self, key, target, state, num_steps: int):
        """Window adaptation of ``ε`` and ``M⁻¹`` if ``adapt`` else plain burn-in."""
        if not self.adapt:
            return _burn_in(self, key, target, state, num_steps)
        return window_adapt(blackjax.nuts, key, target, state, num_steps,
                            target_acceptance_rate=self.target_acceptance_rate,
                            max_num_doublings=self.max_num_doublings)
