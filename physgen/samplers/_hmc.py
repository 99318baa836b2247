"""Hamiltonian Monte Carlo with a fixed number of leapfrog steps (``blackjax.hmc``)."""

from __future__ import annotations

import math
from typing import ClassVar

import jax.numpy as jnp

from .._base import lazy_import
from ._adaptation import window_adapt
from ._base import AbstractKernelSampler, EvalCounts, _burn_in, _step_info

blackjax = lazy_import("blackjax")


def _initial_imm(inverse_mass_matrix, position):
    d = math.prod(jnp.shape(position))
    if inverse_mass_matrix is None:
        return jnp.ones((d,), jnp.result_type(position))
    imm = jnp.asarray(inverse_mass_matrix, jnp.result_type(position))
    if imm.shape not in ((d,), (d, d)):
        raise ValueError(
            f"inverse_mass_matrix has shape {imm.shape}, expected {(d,)} (diagonal) or "
            f"{(d, d)} (dense) for configurations of {d} degrees of freedom"
        )
    return imm


class HMC(AbstractKernelSampler):
    r"""HMC: ``p ~ N(0, M)``, ``L`` leapfrog steps of size ``ε``, MH on ``H = -log p + ½pᵀM⁻¹p``.

    Cost per transition: exactly ``L`` energy+gradient evaluations (``init``: one).
    ``inverse_mass_matrix``: ``None`` (identity), shape ``(d,)`` (diagonal) or ``(d, d)``,
    ``d = prod(event_shape)``. With ``adapt=True`` the warm-up runs BlackJAX's Stan window
    adaptation of ``ε`` and ``M⁻¹`` (target acceptance ``target_acceptance_rate``) per chain;
    ``step_size`` is then its starting value.
    """

    tuned_parameter: ClassVar[str] = "step_size"
    uses_gradient: ClassVar[bool] = True
    optimal_acceptance_rate: ClassVar[float] = 0.65  # Beskos et al. (2013): 0.651
    tempering_exponent: ClassVar[float] = -0.5

    step_size: float
    num_integration_steps: int
    inverse_mass_matrix: jnp.ndarray | None
    adapt: bool
    target_acceptance_rate: float
    divergence_threshold: float

    def __init__(self, step_size: float, num_integration_steps: int,
                 inverse_mass_matrix=None, *, adapt: bool = True,
                 target_acceptance_rate: float = 0.8, divergence_threshold: float = 1000.0):
        if not step_size > 0:
            raise ValueError(f"HMC needs step_size > 0, got {step_size}")
        if int(num_integration_steps) < 1:
            raise ValueError(f"HMC needs num_integration_steps >= 1, got {num_integration_steps}")
        self.step_size = float(step_size)
        self.num_integration_steps = int(num_integration_steps)
        self.inverse_mass_matrix = (
            None if inverse_mass_matrix is None else jnp.asarray(inverse_mass_matrix)
        )
        self.adapt = bool(adapt)
        self.target_acceptance_rate = float(target_acceptance_rate)
        self.divergence_threshold = float(divergence_threshold)

    def _bj_init(self, position, logdensity_fn):
        return blackjax.hmc.init(position, logdensity_fn)

    def _bj_state(self, position, logdensity, logdensity_grad):
        return blackjax.mcmc.hmc.HMCState(position, logdensity, logdensity_grad)

    def _initial_params(self, position):
        dtype = jnp.result_type(position)
        return {
            "step_size": jnp.asarray(self.step_size, dtype),
            "inverse_mass_matrix": _initial_imm(self.inverse_mass_matrix, position),
        }

    def tuned_value(self):
        return self.step_size

    def _bj_step(self, key, inner, logdensity_fn, params):
        kernel = blackjax.hmc.build_kernel(divergence_threshold=self.divergence_threshold)
        inner, info = kernel(key, inner, logdensity_fn, params["step_size"],
                             params["inverse_mass_matrix"], self.num_integration_steps)
        n = self.num_integration_steps
        return inner, _step_info(info.acceptance_rate, info.is_accepted, n, n)

    def init_evals(self) -> EvalCounts:
        return EvalCounts(1, 1, 0)

    def transition_evals(self) -> int:
        return self.num_integration_steps

    def warmup_overhead_evals(self) -> int:
        """Window adaptation restarts the chain once (one evaluation); burn-in does not."""
        return 1 if self.adapt else 0

    def warmup(self, key, target, state, num_steps: int):
        """Window adaptation of ``ε`` and ``M⁻¹`` if ``adapt`` else plain burn-in."""
        if not self.adapt:
            return _burn_in(self, key, target, state, num_steps)
        return window_adapt(blackjax.hmc, key, target, state, num_steps,
                            target_acceptance_rate=self.target_acceptance_rate,
                            num_integration_steps=self.num_integration_steps)
