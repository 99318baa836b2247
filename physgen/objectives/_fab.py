"""FAB: flow annealed importance sampling bootstrap (Midgley et al., ICLR 2023)."""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import AbstractObjective, Array, Key
from ..boltzmann._generator import BoltzmannGenerator
from ..parallel._mesh import constrain_batch
from ..samplers import HMC, AbstractKernelSampler, AISResult, annealed_importance_sampling
from ..targets._base import AbstractTarget
from ._replay_buffer import ReplayBuffer

_DIAGNOSTICS = ("log_Z_p2_over_q", "ais_ess_fraction", "ais_acceptance", "ais_step_size",
                "num_energy_evals")


class FABState(NamedTuple):
    """What FAB carries from step to step.

    ``step_size`` ``(num_intermediate,)``: the AIS step sizes adapted by the last run;
    ``buffer``: the :class:`ReplayBuffer` (``None`` without one); ``num_energy_evals``: the
    target energy evaluations so far, the buffer's initial fill included (int32);
    ``ais``: the diagnostics of the last AIS run (reported by the steps that reuse it).
    """

    step_size: Array
    buffer: ReplayBuffer | None
    num_energy_evals: Array
    ais: dict


def _frozen(model):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    return eqx.combine(jax.lax.stop_gradient(params), static)


def _ais_diagnostics(res: AISResult) -> dict:
    dtype = res.log_w.dtype
    return {
        "log_Z_p2_over_q": res.log_Z.value,
        "ais_ess_fraction": res.ess_fraction,
        "ais_acceptance": (
            jnp.mean(res.acceptance) if res.acceptance.size else jnp.ones((), dtype)
        ),
        "ais_step_size": (jnp.mean(res.step_size) if res.step_size.size else jnp.zeros((), dtype)),
        "num_energy_evals": res.num_energy_evals.astype(dtype),
    }


class FAB(AbstractObjective):
    r"""Data-free α = 2 divergence objective, estimated by AIS from the flow ``q`` to ``p̃²/q``.

    The α = 2 divergence ``D₂(p‖q) = log ∫ p²/q dx`` (``p = p̃/Z`` normalised; zero iff
    ``q = p``) minimises the variance of the importance weights ``p/q``. Its gradient is

    ``∇_θ log ∫ p̃²/q_θ dx = -E_{x ~ p̃²/q_θ}[∇_θ log q_θ(x)]``,

    an expectation under ``g ∝ p̃²/q``, the density that is large exactly where ``q`` misses
    mass of ``p``. FAB draws ``x_0 ~ q`` (parameters held fixed) and runs annealed importance
    sampling from ``f₀ = q`` to ``f₁ = p̃²/q``
    (:func:`physgen.samplers.annealed_importance_sampling`, path ``q^{1-2b} p̃^{2b}``,
    ``num_intermediate`` intermediate densities, ``num_mcmc_steps`` transitions of
    ``transition`` each, default ``HMC(0.1, 5)``; its step size starts at the kernel's and
    is adapted from run to run, carried in the :class:`FABState`).

    - Without a buffer (``buffer_size=None``, Algorithm 1 of Midgley et al. 2023): every step
      runs AIS and takes one gradient step on the surrogate ``S(θ) = -Σ_i w̄_i log q_θ(x_i)``,
      ``w̄ = softmax(log w_AIS)`` held fixed, whose gradient is the self-normalised AIS
      estimate of the gradient above.
    - With a prioritised replay buffer (Algorithm 2): ``init_state`` fills the buffer with
      ``ceil(min_buffer_size / num_samples)`` AIS runs of the initial flow (default
      ``min_buffer_size = buffer_size // 4``; their evaluations count). Every
      ``updates_per_ais``-th step runs AIS and adds its samples, log weights and ``log q`` to
      the buffer; every step draws ``batch_size`` samples ``∝ w`` from the buffer (default
      ``num_samples``) and minimises :meth:`buffer_loss`, after which the drawn samples'
      weights are adjusted to the current flow (``log w += log q_old − log q_θ``).

    The printed ``loss`` is the surrogate (a weighted cross-entropy; it has no fixed
    minimum); the diagnostics report ``log_Z_p2_over_q = log Ẑ_AIS`` (an estimate of
    ``log ∫ p̃²/q ≥ 2 log Z``, equal iff ``q = p``), the AIS ESS, acceptance and step size of
    the last AIS run, and ``cumulative_energy_evals``.

    Cost: :meth:`energy_evals_per_ais` target energy evaluations per AIS run.
    """

    target: AbstractTarget
    num_samples: int
    transition: AbstractKernelSampler
    num_intermediate: int
    num_mcmc_steps: int
    spacing: str
    adapt: bool
    target_acceptance_rate: float | None
    buffer_size: int | None
    min_buffer_size: int | None
    batch_size: int | None
    updates_per_ais: int
    w_adjust_clip: float

    def __init__(
        self,
        target: AbstractTarget,
        num_samples: int = 128,
        *,
        transition: AbstractKernelSampler | None = None,
        num_intermediate: int = 2,
        num_mcmc_steps: int = 1,
        spacing: str = "linear",
        adapt: bool = True,
        target_acceptance_rate: float | None = None,
        buffer_size: int | None = None,
        min_buffer_size: int | None = None,
        batch_size: int | None = None,
        updates_per_ais: int = 4,
        w_adjust_clip: float = 10.0,
    ):
        if int(num_samples) < 2:
            raise ValueError(f"FAB needs num_samples >= 2, got {num_samples}")
        if int(num_intermediate) < 0:
            raise ValueError(f"num_intermediate must be >= 0, got {num_intermediate}")
        transition = HMC(0.1, 5, adapt=False) if transition is None else transition
        if not (isinstance(transition, AbstractKernelSampler) and transition.transition_evals()):
            raise TypeError(
                "transition must be a kernel sampler of fixed cost (HMC, MALA, "
                f"RandomWalkMetropolis), got {type(transition).__name__}"
            )
        if buffer_size is None:
            if batch_size is not None or min_buffer_size is not None:
                raise ValueError("batch_size and min_buffer_size apply to buffer samples: "
                                 "give buffer_size too")
        elif int(buffer_size) < int(num_samples):
            raise ValueError(f"buffer_size ({buffer_size}) must be >= num_samples ({num_samples})")
        if int(updates_per_ais) < 1:
            raise ValueError(f"updates_per_ais must be >= 1, got {updates_per_ais}")
        self.target = target
        self.num_samples = int(num_samples)
        self.transition = transition
        self.num_intermediate = int(num_intermediate)
        self.num_mcmc_steps = int(num_mcmc_steps)
        self.spacing = spacing
        self.adapt = bool(adapt)
        self.target_acceptance_rate = target_acceptance_rate
        self.buffer_size = None if buffer_size is None else int(buffer_size)
        self.min_buffer_size = (
            None if buffer_size is None
            else self.buffer_size // 4 if min_buffer_size is None else int(min_buffer_size)
        )
        self.batch_size = (
            None if buffer_size is None
            else self.num_samples if batch_size is None else int(batch_size)
        )
        self.updates_per_ais = 1 if buffer_size is None else int(updates_per_ais)
        self.w_adjust_clip = float(w_adjust_clip)

    def energy_evals_per_ais(self) -> int:
        """Exact target energy evaluations of one AIS run of ``num_samples`` chains."""
        k = self.num_intermediate + 1
        per_transition = self.transition.transition_evals()
        return self.num_samples * (k + (k - 1) * self.num_mcmc_steps * per_transition)

    def num_fill_runs(self) -> int:
        """AIS runs that fill the buffer before training (0 without a buffer)."""
        if self.buffer_size is None:
            return 0
        return max(1, math.ceil(self.min_buffer_size / self.num_samples))

    def ais(self, model, key: Key, step_size: Array | float | None = None) -> AISResult:
        """AIS from ``q`` (parameters stopped) to ``p̃²/q``; ``num_samples`` chains.

        ``step_size`` scalar or ``(num_intermediate,)`` overrides the kernel's.
        Returned ``samples``/``log_w`` are finite: chains whose weight or position is
        not finite get weight zero (``-inf``) and position zero.
        """
        BoltzmannGenerator(model, self.target)  # refuses mismatched shapes at trace time
        frozen = _frozen(model)
        k0, k1 = jax.random.split(key)
        x0, log_q0 = constrain_batch(frozen.sample_and_log_prob(k0, (self.num_samples,)))
        x0, log_q0 = jax.lax.stop_gradient((x0, log_q0))
        target = self.target

        def log_q(x):
            return frozen.log_prob(x)

        def log_g(x):  # log p̃²/q
            return 2.0 * target.log_density(x) - frozen.log_prob(x)

        res = annealed_importance_sampling(
            k1,
            log_q,
            log_g,
            x0,
            log_q0,
            num_intermediate=self.num_intermediate,
            transition=self.transition,
            step_size=step_size,
            num_mcmc_steps=self.num_mcmc_steps,
            adapt=self.adapt,
            target_acceptance_rate=self.target_acceptance_rate,
            spacing=self.spacing,
        )
        ok = jnp.isfinite(res.log_w) & jnp.all(
            jnp.isfinite(res.samples.reshape(self.num_samples, -1)), axis=-1
        )
        x = jnp.where(ok.reshape((-1,) + (1,) * (res.samples.ndim - 1)), res.samples, 0.0)
        log_w = jnp.where(ok, res.log_w, -jnp.inf)
        return res._replace(
            samples=jax.lax.stop_gradient(x), log_w=jax.lax.stop_gradient(log_w)
        )

    def surrogate(self, model, x: Array, log_w: Array) -> Array:
        """``S(θ) = -Σ_i softmax(log w)_i log q_θ(x_i)``; ``x`` ``(N, *shape)``, ``log_w``
        ``(N,)``."""
        wbar = jax.nn.softmax(jax.lax.stop_gradient(log_w))
        log_q = model.log_prob(jax.lax.stop_gradient(x))
        return -jnp.sum(jnp.where(wbar > 0, wbar * log_q, 0.0))

    def buffer_loss(self, model, x: Array, log_q_old: Array):
        r"""Loss on a batch drawn from the replay buffer with probability ``∝ w`` (Algorithm 2).

        ``L = -(1/B) Σ_i min(c, q_old(x_i)/q_θ(x_i)) log q_θ(x_i)``: the ratio (held fixed)
        corrects the stored weights, set for ``p̃²/q_old``, to the current ``p̃²/q_θ``; ``c =
        w_adjust_clip``. Returns ``(loss, (log_w_adjust (B,), log_q (B,)))`` with
        ``log_w_adjust = log q_old - log q_θ`` to pass to :meth:`ReplayBuffer.adjust`.
        """
        log_q = model.log_prob(jax.lax.stop_gradient(x))
        log_w_adjust = log_q_old - jax.lax.stop_gradient(log_q)
        w = jnp.minimum(jnp.exp(log_w_adjust), self.w_adjust_clip)
        return -jnp.mean(w * log_q), (log_w_adjust, jax.lax.stop_gradient(log_q))

    def _run(self, model, key: Key, state: FABState) -> tuple[FABState, AISResult]:
        """One AIS run from ``state``'s step sizes; its samples join the buffer, if any."""
        res = self.ais(model, key, state.step_size)
        eps = res.adapted_step_size if self.adapt else state.step_size
        buffer = state.buffer
        if buffer is not None:
            buffer = buffer.add(res.samples, res.log_w, _frozen(model).log_prob(res.samples))
        evals = state.num_energy_evals + res.num_energy_evals
        return FABState(eps, buffer, evals, _ais_diagnostics(res)), res

    def init_state(self, model, key: Key) -> FABState:
        """Initial step sizes and, with a buffer, its fill by :meth:`num_fill_runs` AIS runs."""
        return _init_fab_state(self, model, key)

    def loss(self, model, key: Key, batch, state: FABState, step):
        if batch is not None:
            raise ValueError("FAB is data-free; do not pass data")
        k_ais, k_buf = jax.random.split(key)
        if state.buffer is None:
            state, res = self._run(model, k_ais, state)
            loss = self.surrogate(model, res.samples, res.log_w)
        else:
            state = jax.lax.cond(
                step % self.updates_per_ais == 0,
                lambda st: self._run(model, k_ais, st)[0],
                lambda st: st,
                state,
            )
            x, _, log_q_old, idx = state.buffer.sample(k_buf, self.batch_size)
            loss, (adjust, log_q) = self.buffer_loss(model, x, log_q_old)
            state = state._replace(buffer=state.buffer.adjust(idx, adjust, log_q))
        dtype = loss.dtype
        aux = {**state.ais, "cumulative_energy_evals": state.num_energy_evals.astype(dtype)}
        return loss, aux, state


@eqx.filter_jit
def _init_fab_state(objective: FAB, model, key: Key) -> FABState:
    dtype = jnp.result_type(float)
    zero = jnp.zeros((), dtype)
    state = FABState(
        jnp.full((objective.num_intermediate,), objective.transition.tuned_value(), dtype),
        None if objective.buffer_size is None
        else ReplayBuffer.empty(objective.buffer_size, model.shape, dtype),
        jnp.zeros((), jnp.int32),
        {name: zero for name in _DIAGNOSTICS},
    )
    if objective.buffer_size is None:
        return state
    state, _ = jax.lax.scan(
        lambda st, k: (objective._run(model, k, st)[0], None),
        state,
        jax.random.split(key, objective.num_fill_runs()),
    )
    return state
