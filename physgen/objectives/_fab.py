"""FAB: flow annealed importance sampling bootstrap (Midgley et al., ICLR 2023)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import AbstractObjective, Array, Key
from ..boltzmann._generator import BoltzmannGenerator
from ..samplers._ais import AISResult, annealed_importance_sampling
from ..targets._base import AbstractTarget


def _frozen(model):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    return eqx.combine(jax.lax.stop_gradient(params), static)


class FAB(AbstractObjective):
    r"""Data-free α = 2 divergence objective, estimated by AIS from the flow ``q`` to ``p̃²/q``.

    The α = 2 divergence ``D₂(p‖q) = log ∫ p²/q dx`` (``p = p̃/Z`` normalised; zero iff
    ``q = p``) minimises the variance of the importance weights ``p/q``. Its gradient is

    ``∇_θ log ∫ p̃²/q_θ dx = -E_{x ~ p̃²/q_θ}[∇_θ log q_θ(x)]``,

    an expectation under ``g ∝ p̃²/q``, the density that is large exactly where ``q`` misses
    mass of ``p``. FAB draws ``x_0 ~ q`` (parameters held fixed), runs annealed importance
    sampling from ``f₀ = q`` to ``f₁ = p̃²/q``
    (:func:`physgen.samplers.annealed_importance_sampling`, path ``q^{1-2b} p̃^{2b}``), and
    minimises the surrogate loss of Midgley et al. 2023 (Algorithm 1)

    ``S(θ) = -Σ_i w̄_i log q_θ(x_i)``,  ``w̄ = softmax(log w_AIS)`` (held fixed),

    whose gradient is the self-normalised AIS estimate of the gradient above. The printed
    ``loss`` is ``S`` (a weighted cross-entropy; it has no fixed minimum); the diagnostics
    report ``log_Z_p2_over_q = log Ẑ_AIS`` (an estimate of ``log ∫ p̃²/q ≥ 2 log Z``, with
    equality iff ``q = p``), the AIS ESS and acceptance.

    With :func:`physgen.training.fit_fab` the same objective trains with a prioritised replay
    buffer (Algorithm 2) and carries the adapted AIS step sizes across steps; used with
    :func:`physgen.fit` it is stateless (each step starts AIS at ``step_size`` and adapts
    within the run).

    Cost per step: ``num_samples·(K + (K-1)·m·c)`` target energy evaluations, ``K =
    num_intermediate + 1``, ``m = num_mcmc_steps``, ``c = num_integration_steps`` (HMC) or 1.
    """

    target: AbstractTarget
    num_samples: int
    num_intermediate: int
    transition: str
    step_size: float
    num_mcmc_steps: int
    num_integration_steps: int
    spacing: str
    adapt: bool
    target_acceptance_rate: float | None

    def __init__(
        self,
        target: AbstractTarget,
        num_samples: int = 128,
        *,
        num_intermediate: int = 2,
        transition: str = "hmc",
        step_size: float = 0.1,
        num_mcmc_steps: int = 1,
        num_integration_steps: int = 5,
        spacing: str = "linear",
        adapt: bool = True,
        target_acceptance_rate: float | None = None,
    ):
        if int(num_samples) < 2:
            raise ValueError(f"FAB needs num_samples >= 2, got {num_samples}")
        if int(num_intermediate) < 0:
            raise ValueError(f"num_intermediate must be >= 0, got {num_intermediate}")
        if transition not in ("hmc", "mala", "rwm"):
            raise ValueError(f"transition must be 'hmc', 'mala' or 'rwm', got {transition!r}")
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        self.target = target
        self.num_samples = int(num_samples)
        self.num_intermediate = int(num_intermediate)
        self.transition = transition
        self.step_size = float(step_size)
        self.num_mcmc_steps = int(num_mcmc_steps)
        self.num_integration_steps = int(num_integration_steps)
        self.spacing = spacing
        self.adapt = bool(adapt)
        self.target_acceptance_rate = target_acceptance_rate

    def energy_evals_per_step(self) -> int:
        """Exact target energy evaluations of one AIS run of ``num_samples`` chains."""
        k = self.num_intermediate + 1
        c = self.num_integration_steps if self.transition == "hmc" else 1
        return self.num_samples * (k + (k - 1) * self.num_mcmc_steps * c)

    def ais(self, model, key: Key, step_size: Array | float | None = None) -> AISResult:
        """AIS from ``q`` (parameters stopped) to ``p̃²/q``; ``num_samples`` chains.

        ``step_size`` scalar or ``(num_intermediate,)`` overrides ``self.step_size``.
        Returned ``samples``/``log_weights`` are finite: chains whose weight or position is
        not finite get weight zero (``-inf``) and position zero.
        """
        BoltzmannGenerator(model, self.target)  # refuses mismatched shapes at trace time
        frozen = _frozen(model)
        k0, k1 = jax.random.split(key)
        x0, log_q0 = frozen.sample_and_log_prob(k0, (self.num_samples,))
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
            step_size=self.step_size if step_size is None else step_size,
            num_mcmc_steps=self.num_mcmc_steps,
            num_integration_steps=self.num_integration_steps,
            adapt=self.adapt,
            target_acceptance_rate=self.target_acceptance_rate,
            spacing=self.spacing,
        )
        ok = jnp.isfinite(res.log_weights) & jnp.all(
            jnp.isfinite(res.samples.reshape(self.num_samples, -1)), axis=-1
        )
        x = jnp.where(ok.reshape((-1,) + (1,) * (res.samples.ndim - 1)), res.samples, 0.0)
        log_w = jnp.where(ok, res.log_weights, -jnp.inf)
        return res._replace(
            samples=jax.lax.stop_gradient(x), log_weights=jax.lax.stop_gradient(log_w)
        )

    def surrogate(self, model, x: Array, log_w: Array) -> Array:
        """``S(θ) = -Σ_i softmax(log w)_i log q_θ(x_i)``; ``x`` ``(N, *shape)``, ``log_w``
        ``(N,)``."""
        wbar = jax.nn.softmax(jax.lax.stop_gradient(log_w))
        log_q = model.log_prob(jax.lax.stop_gradient(x))
        return -jnp.sum(jnp.where(wbar > 0, wbar * log_q, 0.0))

    def buffer_loss(self, model, x: Array, log_q_old: Array, w_adjust_clip: float = 10.0):
        r"""Loss on a batch drawn from the replay buffer with probability ``∝ w`` (Algorithm 2).

        ``L = -(1/B) Σ_i min(c, q_old(x_i)/q_θ(x_i)) log q_θ(x_i)``: the ratio (held fixed)
        corrects the stored weights, set for ``p̃²/q_old``, to the current ``p̃²/q_θ``; ``c =
        w_adjust_clip``. Returns ``(loss, (log_w_adjust (B,), log_q (B,)))`` with
        ``log_w_adjust = log q_old - log q_θ`` to pass to :meth:`ReplayBuffer.adjust`.
        """
        log_q = model.log_prob(jax.lax.stop_gradient(x))
        log_w_adjust = log_q_old - jax.lax.stop_gradient(log_q)
        w = jnp.minimum(jnp.exp(log_w_adjust), w_adjust_clip)
        return -jnp.mean(w * log_q), (log_w_adjust, jax.lax.stop_gradient(log_q))

    def loss(self, model, key: Key, batch: Array | None = None):
        if batch is not None:
            raise ValueError("FAB is data-free; do not pass data")
        res = self.ais(model, key)
        loss = self.surrogate(model, res.samples, res.log_weights)
        return loss, _ais_diagnostics(res)


def _ais_diagnostics(res: AISResult) -> dict:
    dtype = res.log_weights.dtype
    return {
        "log_Z_p2_over_q": res.log_Z.value,
        "ais_ess_fraction": res.ess_fraction,
        "ais_acceptance": (
            jnp.mean(res.acceptance) if res.acceptance.size else jnp.ones((), dtype)
        ),
        "ais_step_size": (jnp.mean(res.step_size) if res.step_size.size else jnp.zeros((), dtype)),
        "num_energy_evals": res.num_energy_evals.astype(dtype),
    }
