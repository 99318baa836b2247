"""The sampler interface: BlackJAX-style ``init``/``step`` kernels, one chain per call.

Design (how the target is bound): a sampler is an ``eqx.Module`` holding only its
hyperparameters; the target is passed to every call, ``init(key, target, position)`` and
``step(key, target, state)``, exactly as BlackJAX kernels take ``logdensity_fn`` on every
call. Nothing is closed over, so one sampler object serves many targets, the target (a
PyTree) can be traced, vmapped or sharded, and ``run_mcmc`` jits one function of
``(sampler, target, states)``. Tunable parameters (step size, inverse mass matrix, proposal
scale) live in the *state*, not in the sampler, so warm-up adapts them per chain under
``vmap`` and a returned state carries its tuned parameters into a continued run.

Evaluation counts: every ``step`` returns a :class:`StepInfo` with the exact number of target
energy evaluations, gradient evaluations and (for flow proposals) flow evaluations of that
transition; ``init_evals()`` gives the cost of ``init`` and ``warmup`` returns the summed
counts of the warm-up. A gradient evaluation (``jax.value_and_grad``) also evaluates the
energy, so ``num_energy_evals`` counts *all* evaluations of ``E`` (with or without gradient)
and ``num_grad_evals`` the subset that also computed ``∇E``. ``transition_evals()`` and
``warmup_overhead_evals()`` state these costs in advance, so a fixed budget of evaluations
can be split into warm-up and samples without running the sampler.

Capabilities are marker classes: :class:`AbstractParticleSampler` (one run of a whole
population per chain), :class:`AbstractProposalSampler` (draws from a trained proposal, whose
training cost belongs to the sampler's) and :class:`AbstractImportanceSampler` (independent
weighted draws instead of a chain).
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import AbstractExactDensity, Array, Key
from ..targets._base import AbstractTarget


class BudgetTooSmall(ValueError):
    """A budget of energy evaluations does not pay for what a sampler needs to run (warm-up
    and a few samples per chain, two independent runs, enough weighted draws per stratum)."""


class EvalCounts(NamedTuple):
    """Numbers of target energy, target gradient and flow (proposal) evaluations."""

    energy: Any
    grad: Any
    flow: Any

    def __add__(self, other):  # type: ignore[override]
        return EvalCounts(
            self.energy + other.energy, self.grad + other.grad, self.flow + other.flow
        )


def _zero_counts() -> EvalCounts:
    z = jnp.zeros((), jnp.int32)
    return EvalCounts(z, z, z)


class StepInfo(NamedTuple):
    """Uniform per-transition information (all scalars for one chain).

    ``acceptance_rate`` is the Metropolis acceptance probability ``min(1, α)`` of the step
    (NUTS: its trajectory average), ``is_accepted`` whether the state moved, and the three
    counts the exact evaluations made by this transition.
    """

    acceptance_rate: Array
    is_accepted: Array
    num_energy_evals: Array
    num_grad_evals: Array
    num_flow_evals: Array

    @property
    def counts(self) -> EvalCounts:
        return EvalCounts(self.num_energy_evals, self.num_grad_evals, self.num_flow_evals)


def _step_info(acceptance_rate, is_accepted, energy, grad, flow=0) -> StepInfo:
    i32 = lambda v: jnp.asarray(v, jnp.int32)
    return StepInfo(
        jnp.asarray(acceptance_rate),
        jnp.asarray(is_accepted, bool),
        i32(energy),
        i32(grad),
        i32(flow),
    )


class KernelState(NamedTuple):
    """State of a BlackJAX-kernel sampler for one chain.

    ``inner`` is the BlackJAX state (``HMCState``, ``MALAState``, ``RWState``: position,
    ``logdensity`` and possibly ``logdensity_grad``); ``params`` holds the chain's current
    kernel parameters (``step_size``, ``inverse_mass_matrix``, ``scale``), adapted in warm-up.
    """

    inner: Any
    params: dict

    @property
    def position(self) -> Array:
        return self.inner.position

    @property
    def log_density(self) -> Array:
        return self.inner.logdensity


class AbstractSampler(eqx.Module):
    """A Markov kernel (or particle method) on the density of an :class:`AbstractTarget`.

    - ``init(key, target, position) -> state``: ``position`` of shape ``target.event_shape``
      (one chain); the state exposes ``.position`` and ``.log_density`` (untempered
      ``log p(x) = -βE(x)``) of the configuration that is recorded as a sample.
    - ``step(key, target, state) -> (state, StepInfo)``: one transition.
    - ``warmup(key, target, state, num_steps) -> (state, EvalCounts)``: burn-in, with
      adaptation of the state's parameters where the sampler supports it.
    - ``init_evals() -> EvalCounts``: evaluations made by ``init`` (Python ints).
    - ``transition_evals() -> int | None``: energy evaluations of one transition, ``None``
      where it varies from step to step (NUTS).
    - ``warmup_overhead_evals() -> int``: energy evaluations a warm-up of at least one step
      makes besides its transitions (window adaptation restarts the chain: 1).
    - ``initial_positions(key, target, num_chains) -> (num_chains, *event_shape)``: default
      starting configurations.
    - ``extras(states) -> dict``: what ``run_mcmc`` reports besides the samples, from the
      final states batched over chains (tuned step sizes, swap rates).

    Batch chains with ``jax.vmap`` (``run_mcmc`` does this).
    """

    @abc.abstractmethod
    def init(self, key: Key, target: AbstractTarget, position: Array) -> Any: ...

    @abc.abstractmethod
    def step(self, key: Key, target: AbstractTarget, state: Any) -> tuple[Any, StepInfo]: ...

    @abc.abstractmethod
    def warmup(
        self, key: Key, target: AbstractTarget, state: Any, num_steps: int
    ) -> tuple[Any, EvalCounts]: ...

    @abc.abstractmethod
    def init_evals(self) -> EvalCounts: ...

    @abc.abstractmethod
    def transition_evals(self) -> int | None: ...

    @abc.abstractmethod
    def warmup_overhead_evals(self) -> int: ...

    @abc.abstractmethod
    def initial_positions(self, key: Key, target: AbstractTarget, num_chains: int) -> Array: ...

    @abc.abstractmethod
    def extras(self, states: Any) -> dict: ...


class AbstractParticleSampler(AbstractSampler):
    """A population method: one *chain* is one independent run of ``num_particles`` particles.

    ``run(key, target, num_particles)`` returns ``(particles (N, *event_shape), log_density
    (N,), final state, EvalCounts, mean acceptance)``; ``run_mcmc`` vmaps it over
    ``num_chains`` runs. Particles of one run are correlated (resampling), runs are not, so
    errors come from the spread between runs.
    """

    @abc.abstractmethod
    def run(self, key: Key, target: AbstractTarget, num_particles: int) -> tuple: ...


class AbstractProposalSampler(eqx.Module):
    """A sampler whose draws come from a proposal ``q`` (a trained flow) with an exact
    ``log_prob``. Its chains start from ``q``, and the evaluations spent training ``q`` are
    part of its cost."""

    flow: eqx.AbstractVar[AbstractExactDensity]


class WeightedSamples(NamedTuple):
    """Independent draws ``x_i ~ q`` with log importance weights ``log w_i = log p̃(x_i) -
    log q(x_i)``.

    ``positions`` ``(N, *event_shape)``, ``log_w`` ``(N,)``. Stratified draws also
    carry ``strata`` ``(N,)`` (the stratum index of each draw) and ``pool_counts`` ``(K,)``
    (members of each stratum among all ``M`` draws of ``q`` that were sorted into strata);
    both are ``None`` otherwise. ``num_energy_evals`` (one per weighted draw) and
    ``num_flow_evals`` (every draw of ``q`` and every ``log q``) are exact. ``info``: what
    the sampler reports about how it drew them (stratified: pool size, counts, shortfalls).
    """

    positions: Any
    log_w: Any
    strata: Any
    pool_counts: Any
    num_energy_evals: int
    num_flow_evals: int
    info: dict | None = None


class AbstractImportanceSampler(AbstractProposalSampler):
    """Importance sampling: independent weighted draws of the proposal instead of a chain.

    ``sample(key, target, num_energy_evals) -> WeightedSamples`` spends at most
    ``num_energy_evals`` target energy evaluations (one per weighted draw; draws of ``q``
    cost none). Raises :class:`BudgetTooSmall` where the budget cannot pay for an estimate.
    """

    @abc.abstractmethod
    def sample(self, key: Key, target: AbstractTarget, num_energy_evals: int) -> WeightedSamples:
        ...


class AbstractKernelSampler(AbstractSampler):
    """A sampler that is one BlackJAX kernel on a log density, with tunable parameters.

    Concrete classes say how to build the BlackJAX state from a ``logdensity_fn``
    (``_bj_init``) or from precomputed values (``_bj_state``), how to make one transition
    (``_bj_step``) and what the initial parameters are (``_initial_params``, with the tuned
    one starting at ``tuned_value()``). Because these
    act on any ``logdensity_fn``, the same objects serve as inner kernels of tempered methods
    (:class:`TemperedSMC`, :class:`ParallelTempering`) and of annealed importance sampling.

    Class constants: ``tuned_parameter``, the key of ``params`` that warm-up adapts
    (``"step_size"`` or ``"scale"``); ``uses_gradient``, whether the kernel needs
    ``∇log p``; ``optimal_acceptance_rate``, the acceptance rate that asymptotically
    optimises the kernel in high dimension (the default target of adaptation inside AIS);
    ``tempering_exponent``, the power of ``β`` by which the tuned parameter is scaled on the
    tempered density ``β log p`` (curvature ``∝ β``).
    """

    tuned_parameter: eqx.AbstractClassVar[str]
    uses_gradient: eqx.AbstractClassVar[bool]
    optimal_acceptance_rate: eqx.AbstractClassVar[float]
    tempering_exponent: eqx.AbstractClassVar[float]

    @abc.abstractmethod
    def _bj_init(self, position: Array, logdensity_fn) -> Any: ...

    @abc.abstractmethod
    def _bj_state(self, position: Array, logdensity: Array, logdensity_grad: Array | None) -> Any:
        ...

    @abc.abstractmethod
    def _bj_step(self, key: Key, inner: Any, logdensity_fn, params: dict) -> tuple[Any, StepInfo]:
        ...

    @abc.abstractmethod
    def _initial_params(self, position: Array) -> dict: ...

    @abc.abstractmethod
    def tuned_value(self) -> Any:
        """The starting value of the tuned parameter as given: a scalar, or (RWM) possibly
        one per coordinate."""

    def init(self, key: Key, target: AbstractTarget, position: Array) -> KernelState:
        """State for one chain at ``position`` (shape ``event_shape``); ``key`` is unused."""
        del key
        _check_position(position, target)
        inner = self._bj_init(position, target.log_density)
        return KernelState(inner, self._initial_params(position))

    def step(self, key: Key, target: AbstractTarget, state: KernelState):
        """One transition of the kernel with the chain's current parameters."""
        inner, info = self._bj_step(key, state.inner, target.log_density, state.params)
        return KernelState(inner, state.params), info

    def initial_positions(self, key: Key, target: AbstractTarget, num_chains: int) -> Array:
        """``N(0, I)`` draws, ``(num_chains, *event_shape)``."""
        return _standard_normal_positions(key, target, num_chains)

    def extras(self, states: KernelState) -> dict:
        """The tuned parameter of every chain, ``{tuned_parameter: (num_chains, ...)}``."""
        return {self.tuned_parameter: states.params[self.tuned_parameter]}


def _standard_normal_positions(key: Key, target: AbstractTarget, num_chains: int) -> Array:
    return jax.random.normal(key, (num_chains,) + tuple(target.event_shape))


def _check_position(position, target: AbstractTarget) -> None:
    if tuple(jnp.shape(position)) != tuple(target.event_shape):
        raise ValueError(
            f"initial position has shape {tuple(jnp.shape(position))}, expected a single "
            f"configuration of shape {tuple(target.event_shape)} (batch chains with jax.vmap)"
        )


def _burn_in(sampler: AbstractSampler, key: Key, target, state, num_steps: int):
    """``num_steps`` plain transitions in a ``lax.scan`` (no adaptation); summed counts."""

    def body(carry, k):
        st, counts = carry
        st, info = sampler.step(k, target, st)
        return (st, counts + info.counts), None

    if num_steps == 0:
        return state, _zero_counts()
    keys = jax.random.split(key, num_steps)
    (state, counts), _ = jax.lax.scan(body, (state, _zero_counts()), keys)
    return state, counts
