"""Independence Metropolis-Hastings with a normalising-flow (any distribution) proposal."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._base import AbstractExactDensity, Array, lazy_import, require_density
from ._base import (
    AbstractProposalSampler,
    AbstractSampler,
    EvalCounts,
    _burn_in,
    _check_position,
    _step_info,
)

blackjax = lazy_import("blackjax")


class IMHState(NamedTuple):
    """One chain: ``position`` (``event_shape``), ``log_density = log p(x)`` (unnormalised
    target) and ``flow_log_prob = log q(x)`` (cached, so each step evaluates ``q`` once)."""

    position: Array
    log_density: Array
    flow_log_prob: Array


class FlowIndependenceMetropolis(AbstractSampler, AbstractProposalSampler):
    r"""Independence Metropolis: ``x' ~ q`` independently of ``x``, accepted with

    ``α = min(1, p(x') q(x) / (p(x) q(x')))``, i.e. ``log α = w(x') - w(x)`` with the log
    importance weight ``w = log p - log q``. The chain is exactly ``p``-invariant for any
    proposal ``q`` whose support covers ``p`` (Albergo, Kanwar & Shanahan 2019, "flow-based
    MCMC"); acceptance is 1 iff ``q ∝ p``.

    ``flow`` is any :class:`AbstractDistribution` with ``shape == target.event_shape``.
    Cost per transition: one target energy evaluation and one flow evaluation
    (``sample_and_log_prob``); ``init``: one of each (``log q(x₀)``). No gradients. The
    accept/reject step is BlackJAX's ``static_binomial_sampling``; the kernel is written here
    because ``blackjax.irmh`` re-evaluates ``q`` at the current state every step. Chains
    start from flow draws by default.
    """

    flow: AbstractExactDensity

    def __init__(self, flow: AbstractExactDensity):
        require_density(flow, "FlowIndependenceMetropolis (the MH ratio needs q(x))")
        if flow.cond_shape is not None:
            raise ValueError("FlowIndependenceMetropolis needs an unconditional flow")
        self.flow = flow

    def _check(self, target):
        if tuple(self.flow.shape) != tuple(target.event_shape):
            raise ValueError(
                f"flow has shape {tuple(self.flow.shape)} but the target's event_shape is "
                f"{tuple(target.event_shape)}"
            )

    def init(self, key, target, position) -> IMHState:
        """State at ``position`` (shape ``event_shape``); ``key`` is unused."""
        del key
        self._check(target)
        _check_position(position, target)
        return IMHState(position, target.log_density(position), self.flow.log_prob(position))

    def step(self, key, target, state: IMHState):
        """Propose from the flow, accept with ``min(1, exp(w(x') - w(x)))``."""
        self._check(target)
        k_prop, k_acc = jax.random.split(key)
        x_new, lq_new = self.flow.sample_and_log_prob(k_prop)
        x_new = x_new.astype(jnp.result_type(state.position))
        lp_new = target.log_density(x_new)
        new = IMHState(x_new, lp_new.astype(state.log_density.dtype),
                       lq_new.astype(state.flow_log_prob.dtype))
        w_new = new.log_density - new.flow_log_prob
        log_alpha = w_new - (state.log_density - state.flow_log_prob)
        log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
        accept = blackjax.mcmc.proposal.static_binomial_sampling
        state, (accepted, p_accept, _) = accept(k_acc, log_alpha, state, new)
        return state, _step_info(p_accept, accepted, 1, 0, 1)

    def init_evals(self) -> EvalCounts:
        return EvalCounts(1, 0, 1)

    def transition_evals(self) -> int:
        return 1

    def warmup_overhead_evals(self) -> int:
        return 0

    def initial_positions(self, key, target, num_chains: int):
        """Flow draws ``(num_chains, *event_shape)``."""
        self._check(target)
        return self.flow.sample(key, (num_chains,))

    def extras(self, states) -> dict:
        """Nothing to report: the flow is fixed."""
        del states
        return {}

    def warmup(self, key, target, state, num_steps: int):
        """Plain burn-in (nothing to adapt; the flow is fixed)."""
        return _burn_in(self, key, target, state, num_steps)
