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
and ``num_grad_evals`` the subset that also computed ``∇E``.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key
from ..targets._base import AbstractTarget


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


class AbstractKernelSampler(AbstractSampler):
    """A sampler that is one BlackJAX kernel on a log density, with tunable parameters.

    Concrete classes say how to build the BlackJAX state from a ``logdensity_fn``
    (``_bj_init``), how to make one transition (``_bj_step``) and what the initial parameters
    are (``_initial_params``). Because these act on any ``logdensity_fn``, the same objects
    serve as inner kernels of tempered methods (:class:`TemperedSMC`,
    :class:`ParallelTempering`) on tempered densities.
    """

    @abc.abstractmethod
    def _bj_init(self, position: Array, logdensity_fn) -> Any: ...

    @abc.abstractmethod
    def _bj_step(self, key: Key, inner: Any, logdensity_fn, params: dict) -> tuple[Any, StepInfo]:
        ...

    @abc.abstractmethod
    def _initial_params(self, position: Array) -> dict: ...

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
