"""Warm-up adaptation built on BlackJAX: Stan's window adaptation and dual averaging.

Adaptation under ``vmap``: every chain adapts its own parameters (its step size, its mass
matrix) from its own history. This needs no communication between chains, so ``run_mcmc``
simply vmaps the warm-up and the chain axis can be sharded over devices; the adapted values
live in each chain's :class:`KernelState` and are returned with the final state. (BlackJAX's
``window_adaptation`` also has a shared-step-size multi-chain path; it couples chains through
a mean over the chain axis and is not used here.)
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import lazy_import
from ._base import AbstractKernelSampler, EvalCounts, KernelState, _burn_in, _zero_counts

blackjax = lazy_import("blackjax")


def window_adapt(algorithm, key, target, state: KernelState, num_steps: int, *,
                 target_acceptance_rate: float, **extra):
    """Stan window adaptation (``blackjax.window_adaptation``) of step size and mass matrix.

    ``algorithm`` is ``blackjax.hmc`` or ``blackjax.nuts``; ``extra`` its fixed parameters.
    BlackJAX re-initialises the chain from ``state.position`` (one ``value_and_grad``), then
    makes ``num_steps`` transitions; the returned counts are ``1 + Σ_t L_t`` energy and
    gradient evaluations, ``L_t`` the integration steps of transition ``t``.
    """
    if num_steps == 0:
        return state, _zero_counts()
    imm = state.params["inverse_mass_matrix"]
    warm = blackjax.window_adaptation(
        algorithm,
        target.log_density,
        is_mass_matrix_diagonal=imm.ndim == 1,
        initial_inverse_mass_matrix=imm,
        initial_step_size=state.params["step_size"],
        target_acceptance_rate=target_acceptance_rate,
        adaptation_info_fn=lambda s, info, a: jnp.asarray(info.num_integration_steps, jnp.int32),
        **extra,
    )
    result, num_integration = warm.run(key, state.position, num_steps)
    n = 1 + jnp.sum(num_integration)
    params = dict(
        state.params,
        step_size=jnp.asarray(result.parameters["step_size"], state.params["step_size"].dtype),
        inverse_mass_matrix=result.parameters["inverse_mass_matrix"].astype(imm.dtype),
    )
    return KernelState(result.state, params), EvalCounts(n, n, jnp.zeros((), jnp.int32))


def dual_averaging_adapt(sampler, key, target, state: KernelState, num_steps: int, *,
                         param: str, target_acceptance_rate: float):
    """Adapt ``params[param] = p₀·m`` by dual averaging of ``log m`` (Hoffman & Gelman 2014).

    Uses ``blackjax.adaptation.step_size.dual_averaging_adaptation`` to drive the Metropolis
    acceptance rate to ``target_acceptance_rate``; the final multiplier is the averaged
    iterate ``exp(x̄)``. No extra evaluations beyond the transitions themselves.
    """
    if num_steps == 0:
        return state, _zero_counts()
    da_init, da_update, da_final = blackjax.adaptation.step_size.dual_averaging_adaptation(
        target_acceptance_rate)
    p0 = state.params[param]

    def body(carry, k):
        st, da, counts = carry
        mult = jnp.exp(da.log_step_size).astype(p0.dtype)
        st = KernelState(st.inner, dict(st.params, **{param: p0 * mult}))
        st, info = sampler.step(k, target, st)
        da = da_update(da, info.acceptance_rate)
        return (st, da, counts + info.counts), None

    da0 = da_init(jnp.ones((), p0.dtype))
    (state, da, counts), _ = jax.lax.scan(
        body, (state, da0, _zero_counts()), jax.random.split(key, num_steps)
    )
    final = p0 * da_final(da).astype(p0.dtype)
    return KernelState(state.inner, dict(state.params, **{param: final})), counts


class AbstractDualAveragingSampler(AbstractKernelSampler):
    """A kernel of one target evaluation per transition (MALA, random-walk Metropolis) whose
    warm-up is dual averaging of its tuned parameter (``adapt``), towards
    ``target_acceptance_rate``, or plain burn-in."""

    adapt: eqx.AbstractVar[bool]
    target_acceptance_rate: eqx.AbstractVar[float]

    def transition_evals(self) -> int:
        return 1

    def warmup_overhead_evals(self) -> int:
        return 0

    def warmup(self, key, target, state, num_steps: int):
        """Dual averaging of the tuned parameter if ``adapt`` else plain burn-in."""
        if not self.adapt:
            return _burn_in(self, key, target, state, num_steps)
        return dual_averaging_adapt(self, key, target, state, num_steps,
                                    param=self.tuned_parameter,
                                    target_acceptance_rate=self.target_acceptance_rate)
