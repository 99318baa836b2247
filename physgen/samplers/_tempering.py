"""Tempered samplers that cross barriers: parallel tempering and adaptive tempered SMC."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Key, lazy_import
from ..distributions import AbstractDistribution, DiagNormal
from ..parallel._mesh import to_host
from ._base import (
    AbstractKernelSampler,
    AbstractParticleSampler,
    AbstractSampler,
    EvalCounts,
    KernelState,
    _burn_in,
    _check_position,
    _standard_normal_positions,
    _step_info,
    _zero_counts,
)
from ._nuts import NUTS

blackjax = lazy_import("blackjax")


def _check_inner(inner, who: str) -> None:
    if not isinstance(inner, AbstractKernelSampler):
        raise TypeError(
            f"{who} needs an inner kernel sampler (HMC, NUTS, MALA, RandomWalkMetropolis), "
            f"got {type(inner).__name__}"
        )
    if isinstance(inner, NUTS) and inner.step_size is None:
        raise ValueError(f"{who}: an inner NUTS kernel needs an explicit step_size")


def _temper_params(inner: AbstractKernelSampler, params: dict, beta) -> dict:
    """Scale the tuned parameter to the density ``β log p`` (curvature ``∝ β``): by
    ``β^{tempering_exponent}`` (HMC/NUTS step size and RWM scale ``∝ β^{-1/2}``; MALA's ``ε``,
    a diffusion time, ``∝ β^{-1}``)."""
    name = inner.tuned_parameter
    return dict(params, **{name: params[name] * beta**inner.tempering_exponent})


def geometric_ladder(num_replicas: int, beta_min: float) -> np.ndarray:
    """Inverse temperatures ``β_k = β_min^{(K-1-k)/(K-1)}``, increasing from ``β_min`` to 1."""
    if num_replicas < 2 or not 0 < beta_min < 1:
        raise ValueError("geometric_ladder needs num_replicas >= 2 and 0 < beta_min < 1")
    return beta_min ** (np.arange(num_replicas - 1, -1, -1) / (num_replicas - 1))


# -------------------------------------------------------------------- parallel tempering
class PTState(NamedTuple):
    """Replica-exchange state of one chain.

    ``replicas``: a :class:`KernelState` batched over the ``K`` temperatures (leading axis),
    replica ``k`` targeting ``β_k log p``; its ``logdensity`` (and gradient) are tempered.
    ``swap_accepted``/``swap_attempted``: counts per adjacent pair ``(k, k+1)``, shape
    ``(K-1,)``. ``position``/``log_density`` are those of the ``β = 1`` replica (last).
    """

    replicas: KernelState
    step_count: Array
    swap_accepted: Array
    swap_attempted: Array

    @property
    def position(self) -> Array:
        inner = self.replicas.inner  # replica axis sits after any chain axes of logdensity
        return jnp.take(inner.position, -1, axis=inner.logdensity.ndim - 1)

    @property
    def log_density(self) -> Array:
        return self.replicas.inner.logdensity[..., -1]


def _retemper(kernel: AbstractKernelSampler, inner, ratio):
    """Multiply the tempered log density (and gradient) of each replica by ``ratio`` (K,)."""
    grad = None
    if kernel.uses_gradient:
        g = inner.logdensity_grad
        grad = g * ratio.reshape((-1,) + (1,) * (g.ndim - 1))
    return kernel._bj_state(inner.position, inner.logdensity * ratio, grad)


class ParallelTempering(AbstractSampler):
    r"""Replica exchange over inverse temperatures ``β_1 < … < β_K = 1``.

    Each step moves every replica with one transition of ``inner`` (a BlackJAX kernel:
    HMC, NUTS, MALA or RWM) on ``π_k ∝ p^{β_k}``, with the inner step size scaled to the
    temperature (see ``_temper_params``), then proposes swaps of adjacent pairs
    ``(k, k+1)``, alternating even and odd pairs (deterministic even-odd scheme, so the pairs
    of one step are disjoint), accepted with

    ``min(1, exp((β_{k+1} - β_k)(log p(x_k) - log p(x_{k+1}))))``.

    Swaps need no new evaluations: the untempered ``log p`` is ``logdensity/β``. Samples
    are the ``β = 1`` replica. Cost per step: ``K`` times the inner kernel's cost
    (every replica's evaluations count); ``init``: one inner init at the shared start
    position, copied to all replicas with ``logdensity`` scaled by ``β_k``. Warm-up is burn-in
    (no adaptation). BlackJAX has no replica exchange; the swap move is written here around
    BlackJAX kernels.
    """

    inner: AbstractKernelSampler
    betas: Array

    def __init__(self, inner: AbstractKernelSampler, betas):
        _check_inner(inner, "ParallelTempering")
        b = np.asarray(betas, dtype=np.float64)
        if b.ndim != 1 or b.size < 2:
            raise ValueError(f"betas must be a 1-D array of >= 2 values, got shape {b.shape}")
        if not (np.all(b > 0) and np.all(np.diff(b) > 0) and b[-1] == 1.0):
            raise ValueError(f"betas must be positive, strictly increasing and end at 1, got {b}")
        self.inner = inner
        self.betas = jnp.asarray(b)

    @property
    def num_replicas(self) -> int:
        return self.betas.shape[0]

    def _tempered(self, target, beta):
        return lambda x: beta.astype(jnp.result_type(x)) * target.log_density(x)

    def init(self, key: Key, target, position: Array) -> PTState:
        """All ``K`` replicas start at ``position`` (shape ``event_shape``); ``key`` unused."""
        del key
        _check_position(position, target)
        betas = self.betas.astype(jnp.result_type(position))
        params0 = self.inner._initial_params(position)

        k = self.num_replicas
        # one evaluation at the shared start, then tempered copies: log π_k = β_k log p
        inner0 = self.inner._bj_init(position, target.log_density)
        inner = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (k,) + a.shape), inner0)
        inner = _retemper(self.inner, inner, betas)
        params = jax.vmap(lambda b: _temper_params(self.inner, params0, b))(betas)
        return PTState(KernelState(inner, params), jnp.zeros((), jnp.int32),
                       jnp.zeros((k - 1,), jnp.int32), jnp.zeros((k - 1,), jnp.int32))

    def step(self, key: Key, target, state: PTState):
        """Move every replica, then attempt the even or odd adjacent swaps."""
        k = self.num_replicas
        dtype = state.replicas.inner.logdensity.dtype
        betas = self.betas.astype(dtype)
        k_move, k_swap = jax.random.split(key)

        def move(kk, inner, params, beta):
            return self.inner._bj_step(kk, inner, self._tempered(target, beta), params)

        inner, infos = jax.vmap(move)(
            jax.random.split(k_move, k), state.replicas.inner, state.replicas.params, betas
        )
        ell = inner.logdensity / betas
        log_a = (betas[1:] - betas[:-1]) * (ell[:-1] - ell[1:])
        pair = jnp.arange(k - 1)
        proposed = (pair % 2) == (state.step_count % 2)
        u = jax.random.uniform(k_swap, (k - 1,), dtype)
        accepted = proposed & (jnp.log(u) < log_a)
        up = jnp.concatenate([accepted, jnp.zeros((1,), bool)])
        down = jnp.concatenate([jnp.zeros((1,), bool), accepted])
        idx = jnp.arange(k)
        perm = jnp.where(up, idx + 1, jnp.where(down, idx - 1, idx))
        inner = jax.tree_util.tree_map(lambda a: a[perm], inner)
        inner = _retemper(self.inner, inner, betas / betas[perm])
        new = PTState(
            KernelState(inner, state.replicas.params),
            state.step_count + 1,
            state.swap_accepted + accepted.astype(jnp.int32),
            state.swap_attempted + proposed.astype(jnp.int32),
        )
        info = _step_info(
            infos.acceptance_rate[-1],
            infos.is_accepted[-1],
            jnp.sum(infos.num_energy_evals),
            jnp.sum(infos.num_grad_evals),
            jnp.sum(infos.num_flow_evals),
        )
        return new, info

    def init_evals(self) -> EvalCounts:
        return self.inner.init_evals()

    def warmup(self, key: Key, target, state: PTState, num_steps: int):
        """Plain burn-in of all replicas (with swaps)."""
        return _burn_in(self, key, target, state, num_steps)

    def transition_evals(self) -> int | None:
        """``K`` inner transitions (``None`` where the inner cost varies)."""
        c = self.inner.transition_evals()
        return None if c is None else self.num_replicas * c

    def warmup_overhead_evals(self) -> int:
        return 0

    def initial_positions(self, key: Key, target, num_chains: int) -> Array:
        """``N(0, I)`` draws, ``(num_chains, *event_shape)``."""
        return _standard_normal_positions(key, target, num_chains)

    def extras(self, states: PTState) -> dict:
        """``swap_acceptance`` ``(K-1,)``: accepted over attempted swaps of each adjacent
        pair, pooled over chains."""
        att = to_host(states.swap_attempted).sum(0)
        return {"swap_acceptance": to_host(states.swap_accepted).sum(0) / np.maximum(att, 1)}


# -------------------------------------------------------------------- tempered SMC
class SMCRunState(NamedTuple):
    """One adaptive-tempered SMC run: ``particles`` ``(N, *event_shape)``, normalised
    ``weights`` ``(N,)``, ``tempering_param`` ``λ ∈ [0, 1]``, running ``log_Z`` estimate of
    ``log ∫ p dx`` (the reference is normalised), number of tempering steps, summed inner
    acceptance and number of inner transitions (for the mean acceptance)."""

    particles: Array
    weights: Array
    tempering_param: Array
    log_Z: Array
    num_steps: Array
    acceptance_sum: Array
    num_moves: Array


class TemperedSMC(AbstractParticleSampler):
    r"""Adaptive tempered SMC (``blackjax.adaptive_tempered_smc``) from a reference ``q₀`` to ``p``.

    Path ``π_λ ∝ q₀^{1-λ} p^λ``; each step picks ``λ`` so the ESS of the incremental weights
    ``(λ' - λ)(log p - log q₀)`` is ``target_ess·N``, resamples (systematic) and moves every
    particle with ``num_mcmc_steps`` transitions of ``inner`` (HMC/NUTS/MALA/RWM, fixed
    parameters) on ``π_λ``. Once ``λ = 1`` the weighted particles are resampled to equal
    weights and moved ``num_mcmc_steps`` more transitions on ``p`` (so the returned particles
    are distinct and equally weighted). ``reference`` defaults to ``N(0, reference_scale² I)``.

    Interface: one *run* per chain. ``init(key, target, particles)`` takes the initial
    population ``(N, *event_shape)`` (drawn from the reference), ``step`` is one tempering
    step, ``run(key, target, num_particles)`` the whole run; ``run_mcmc`` vmaps ``run`` over
    independent runs (``num_chains``) with ``num_samples`` particles each.

    Exact cost per tempering step, ``N`` particles, inner init cost ``c₀`` and transition
    costs ``c_t``: ``N`` energies for the ESS solve, ``N·c₀ + Σ c_t`` for the moves, ``N``
    energies for the new weights (reference evaluations are not counted: ``q₀`` is not the
    target). The final phase costs ``N·c₀ + Σ c_t``.
    """

    inner: AbstractKernelSampler
    num_mcmc_steps: int
    target_ess: float
    reference: AbstractDistribution | None
    reference_scale: float
    max_num_steps: int

    def __init__(self, inner: AbstractKernelSampler, *, num_mcmc_steps: int = 5,
                 target_ess: float = 0.5, reference: AbstractDistribution | None = None,
                 reference_scale: float = 3.0, max_num_steps: int = 500):
        _check_inner(inner, "TemperedSMC")
        if not 0 < target_ess < 1:
            raise ValueError(f"target_ess must be in (0, 1), got {target_ess}")
        if int(num_mcmc_steps) < 1:
            raise ValueError(f"num_mcmc_steps must be >= 1, got {num_mcmc_steps}")
        if reference is not None and reference.cond_shape is not None:
            raise ValueError("TemperedSMC needs an unconditional reference distribution")
        self.inner = inner
        self.num_mcmc_steps = int(num_mcmc_steps)
        self.target_ess = float(target_ess)
        self.reference = reference
        self.reference_scale = float(reference_scale)
        self.max_num_steps = int(max_num_steps)

    def reference_for(self, target) -> AbstractDistribution:
        """The reference ``q₀`` on the target's event shape."""
        if self.reference is None:
            shape = tuple(target.event_shape)
            with jax.ensure_compile_time_eval():  # the constructor checks its scale eagerly
                return DiagNormal(jnp.zeros(shape), jnp.full(shape, self.reference_scale))
        if tuple(self.reference.shape) != tuple(target.event_shape):
            raise ValueError(
                f"reference has shape {tuple(self.reference.shape)} but the target's "
                f"event_shape is {tuple(target.event_shape)}"
            )
        return self.reference

    def _mcmc_fns(self):
        inner = self.inner
        step_fn = lambda key, st, logdensity_fn, **p: inner._bj_step(key, st, logdensity_fn, p)
        return step_fn, inner._bj_init

    def _mcmc_params(self, particle):
        return jax.tree_util.tree_map(lambda v: v[None], self.inner._initial_params(particle))

    def init(self, key: Key, target, position: Array) -> SMCRunState:
        """Start at ``λ = 0`` with the population ``position`` ``(N, *event_shape)``."""
        del key
        event = tuple(target.event_shape)
        if jnp.ndim(position) != len(event) + 1 or tuple(jnp.shape(position)[1:]) != event:
            raise ValueError(
                f"TemperedSMC.init: particles have shape {tuple(jnp.shape(position))}, "
                f"expected (num_particles, *{event})"
            )
        n = position.shape[0]
        dtype = jnp.result_type(position)
        z = jnp.zeros((), jnp.int32)
        return SMCRunState(position, jnp.full((n,), 1.0 / n, dtype), jnp.zeros((), dtype),
                        jnp.zeros((), dtype), z, jnp.zeros((), dtype), z)

    def step(self, key: Key, target, state: SMCRunState):
        """One adaptive tempering step (BlackJAX kernel)."""
        ref = self.reference_for(target)
        logprior = ref._log_prob
        loglik = lambda x: target.log_density(x) - ref._log_prob(x)
        step_fn, init_fn = self._mcmc_fns()
        kernel = blackjax.adaptive_tempered_smc.build_kernel(
            logprior, loglik, step_fn, init_fn, blackjax.smc.resampling.systematic,
            self.target_ess
        )
        bj_state = blackjax.smc.tempered.TemperedSMCState(
            state.particles, state.weights, state.tempering_param
        )
        bj_state, info = kernel(key, bj_state, self.num_mcmc_steps,
                                self._mcmc_params(state.particles[0]))
        n = state.particles.shape[0]
        moves: Any = info.update_info  # StepInfo, leaves (N, num_mcmc_steps)
        c0 = self.inner.init_evals()
        energy = 2 * n + n * c0.energy + jnp.sum(moves.num_energy_evals)
        grad = n * c0.grad + jnp.sum(moves.num_grad_evals)
        acc = jnp.sum(moves.acceptance_rate)
        new = SMCRunState(
            bj_state.particles, bj_state.weights,
            jnp.asarray(bj_state.tempering_param, state.tempering_param.dtype),
            state.log_Z + info.log_likelihood_increment.astype(state.log_Z.dtype),
            state.num_steps + 1,
            state.acceptance_sum + acc.astype(state.acceptance_sum.dtype),
            state.num_moves + moves.acceptance_rate.size,
        )
        return new, _step_info(acc / moves.acceptance_rate.size, True, energy, grad, 0)

    def finalize(self, key: Key, target, state: SMCRunState):
        """Resample to equal weights at ``λ = 1`` and move ``num_mcmc_steps`` transitions.

        Returns ``(particles (N, *event_shape), log_density (N,), StepInfo)``.
        """
        k_res, k_move = jax.random.split(key)
        n = state.particles.shape[0]
        idx = blackjax.smc.resampling.systematic(k_res, state.weights, n)
        particles = state.particles[idx]
        params = self.inner._initial_params(particles[0])

        def move(kk, x):
            st = self.inner._bj_init(x, target.log_density)

            def body(s, k2):
                s, info = self.inner._bj_step(k2, s, target.log_density, params)
                return s, info

            st, infos = jax.lax.scan(body, st, jax.random.split(kk, self.num_mcmc_steps))
            return st, infos

        st, infos = jax.vmap(move)(jax.random.split(k_move, n), particles)
        c0 = self.inner.init_evals()
        info = _step_info(
            jnp.mean(infos.acceptance_rate), True,
            n * c0.energy + jnp.sum(infos.num_energy_evals),
            n * c0.grad + jnp.sum(infos.num_grad_evals), 0,
        )
        return st.position, st.logdensity, info

    def run(self, key: Key, target, num_particles: int):
        """One complete run: reference draw, tempering to ``λ = 1``, final resample and move.

        Returns ``(particles (N, *event_shape), log_density (N,), SMCRunState, EvalCounts,
        mean_acceptance)``. ``SMCRunState.log_Z`` is the estimate of ``log ∫ p dx``.
        """
        k0, k_loop, k_fin = jax.random.split(key, 3)
        particles = self.initial_positions(k0, target, num_particles)
        state = self.init(None, target, particles)

        def cond(c):
            st, _, _ = c
            return (st.tempering_param < 1) & (st.num_steps < self.max_num_steps)

        def body(c):
            st, k, counts = c
            k, sub = jax.random.split(k)
            st, info = self.step(sub, target, st)
            return st, k, counts + info.counts

        state, _, counts = jax.lax.while_loop(cond, body, (state, k_loop, _zero_counts()))
        x, ld, info = self.finalize(k_fin, target, state)
        m = num_particles * self.num_mcmc_steps
        acc = (state.acceptance_sum + info.acceptance_rate * m) / (state.num_moves + m)
        return x, ld, state, counts + info.counts, acc

    def init_evals(self) -> EvalCounts:
        return EvalCounts(0, 0, 0)

    def warmup(self, key: Key, target, state: SMCRunState, num_steps: int):
        """No warm-up: SMC starts from exact reference samples (returns ``state`` unchanged)."""
        del key, target, num_steps
        return state, _zero_counts()

    def transition_evals(self) -> None:
        """``None``: a tempering step's cost depends on the moves made."""
        return None

    def warmup_overhead_evals(self) -> int:
        return 0

    def initial_positions(self, key: Key, target, num_chains: int) -> Array:
        """Reference draws ``(num_chains, *event_shape)``: the initial population of a run."""
        return self.reference_for(target).sample(key, (num_chains,))

    def extras(self, states: SMCRunState) -> dict:
        """Per run: ``log_Z`` (the estimate of ``log ∫ p dx``) and ``num_tempering_steps``."""
        return {"log_Z": states.log_Z, "num_tempering_steps": states.num_steps}

