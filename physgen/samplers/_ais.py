"""Annealed importance sampling (Neal 2001) along a geometric path, BlackJAX transitions."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Estimate, Key
from ..reweighting._estimators import log_Z as _log_Z_estimate
from ..reweighting._weights import ess_fraction as _ess_fraction
from ._base import AbstractKernelSampler, AbstractSampler
from ._hmc import HMC

_DEFAULT_TRANSITION = HMC(0.1, 5, adapt=False)


class AISResult(NamedTuple):
    r"""Output of :func:`annealed_importance_sampling` for ``N`` independent chains.

    - ``samples`` ``(N, *event_shape)``: the positions ``x_{K-1}`` after the last transition.
    - ``log_w`` ``(N,)``: ``log w = Σ_{k=1}^{K} (b_k - b_{k-1}) [log f₁ - log f₀](x_{k-1})``;
      ``E[w] = Z₁/Z₀`` for every chain, and ``(x, w)`` is a properly weighted sample of
      ``f₁/Z₁``.
    - ``log_Z``: :class:`~physgen.reweighting.Estimate` of ``log(Z₁/Z₀)`` (log-mean-exp, with
      the delta-method standard error of :func:`physgen.reweighting.log_Z`).
    - ``ess_fraction``: Kish ESS of the weights divided by ``N``.
    - ``num_energy_evals`` / ``num_grad_evals``: exact totals over all chains of evaluations
      of ``log f₁`` (the target side; every evaluation of the tempered density evaluates it
      once) and of those that also computed its gradient. ``log f₀`` is evaluated as often.
    - ``acceptance`` ``(num_intermediate,)``: mean acceptance probability per intermediate.
    - ``step_size`` ``(num_intermediate,)``: the step sizes used; ``adapted_step_size`` the
      values moved towards the target acceptance, to start the next run with.
    - ``betas`` ``(num_intermediate + 2,)``: the path ``0 = b_0 < … < b_K = 1``.
    """

    samples: Array
    log_w: Array
    log_Z: Estimate
    ess_fraction: Array
    num_energy_evals: Array
    num_grad_evals: Array
    acceptance: Array
    step_size: Array
    adapted_step_size: Array
    betas: Array


def _check_transition(transition):
    if isinstance(transition, AbstractKernelSampler):
        return transition
    if callable(transition) and not isinstance(transition, AbstractSampler):
        return None
    raise TypeError(
        "transition must be a kernel sampler (HMC, MALA, NUTS, RandomWalkMetropolis) or a "
        f"callable (key, x, beta) -> x', got {transition!r}"
    )


def _initial_step(kernel, step_size, num_intermediate: int, dtype) -> Array:
    if step_size is None:
        step_size = 1.0 if kernel is None else kernel.tuned_value()
    s = jnp.asarray(step_size, dtype)
    if s.ndim == 0:
        s = jnp.full((num_intermediate,), s, dtype)
    if s.shape != (num_intermediate,):
        raise ValueError(
            f"step_size must be a scalar or have shape ({num_intermediate},) (one per "
            f"intermediate distribution), got {s.shape}"
        )
    return s


def ais_betas(num_intermediate: int, spacing: str = "linear") -> np.ndarray:
    """Path ``b_0 = 0 < b_1 < … < b_K = 1`` with ``K = num_intermediate + 1``.

    ``"linear"``: ``b_k = k/K``; ``"geometric"``: ``b_k = 10^{-3(1 - k/K)}`` for ``0 < k < K``
    (dense near 0, where the tempered density changes fastest for a broad ``f₀``).
    """
    if int(num_intermediate) < 0:
        raise ValueError(f"num_intermediate must be >= 0, got {num_intermediate}")
    k = int(num_intermediate) + 1
    t = np.arange(k + 1) / k
    if spacing == "linear":
        return t
    if spacing == "geometric":
        b = 10.0 ** (-3.0 * (1.0 - t))
        b[0] = 0.0
        return b
    raise ValueError(f"spacing must be 'linear' or 'geometric', got {spacing!r}")


def annealed_importance_sampling(
    key: Key,
    log_density_0: Callable[[Array], Array],
    log_density_1: Callable[[Array], Array],
    x0: Array,
    log_q0: Array | None = None,
    *,
    num_intermediate: int,
    transition: AbstractKernelSampler | Callable[[Key, Array, Array], Array] = _DEFAULT_TRANSITION,
    step_size=None,
    num_mcmc_steps: int = 1,
    adapt: bool = True,
    target_acceptance_rate: float | None = None,
    adaptation_rate: float = 0.5,
    betas=None,
    spacing: str = "linear",
) -> AISResult:
    r"""Annealed importance sampling from ``f₀`` (normalised, sampled exactly) to ``f₁``.

    Path ``log π_b = (1 - b) log f₀ + b log f₁`` at ``0 = b_0 < b_1 < … < b_K = 1``,
    ``K = num_intermediate + 1``. For each of the ``N`` chains, starting at ``x_0 ~ f₀``::

        log w = 0
        for k = 1..K:  log w += (b_k - b_{k-1}) (log f₁ - log f₀)(x_{k-1})
                       if k < K:  x_k = T_k^m(x_{k-1})      (T_k leaves π_{b_k} invariant)

    ``E[w] = Z₁/Z₀`` for any ``π_{b_k}``-invariant ``T_k`` (no resampling: the weights
    accumulate; contrast :class:`TemperedSMC`). ``num_intermediate = 0`` is plain importance
    sampling.

    Args:
        key: PRNG key.
        log_density_0, log_density_1: single-example log densities ``event_shape -> ()``;
            ``f₀`` normalised (the proposal ``q``), ``f₁`` unnormalised.
        x0: ``(N, *event_shape)`` exact samples of ``f₀``.
        log_q0: optional ``(N,)`` values of ``log f₀(x0)`` (e.g. from a flow's
            ``sample_and_log_prob``); evaluated if ``None``.
        transition: a kernel sampler (:class:`HMC`, :class:`MALA`, :class:`NUTS`,
            :class:`RandomWalkMetropolis`; its BlackJAX kernel is used with its other
            parameters fixed, e.g. HMC's leapfrog steps; its own warm-up is not), or a
            callable ``(key, x, b) -> x'`` on one example that leaves ``π_b`` invariant (e.g.
            an exact sampler; counted as zero evaluations, never adapted). Default
            ``HMC(0.1, 5, adapt=False)``.
        step_size: scalar or ``(num_intermediate,)`` starting value per intermediate of the
            kernel's tuned parameter (the step size; RWM: the proposal standard deviation).
            ``None``: the kernel's own.
        num_mcmc_steps: ``m`` transitions per intermediate distribution.
        adapt: adapt step sizes inside the run. After the transitions at ``b_k``, with mean
            acceptance ``ā_k`` over chains, a shared log-multiplier moves by
            ``adaptation_rate·(ā_k - a*)`` and applies to all later intermediates of this run;
            ``adapted_step_size`` (per intermediate) is returned for the next run. The step
            size at ``b_k`` then depends on the other chains' past (as in adaptive SMC): each
            ``T_k`` is still ``π_{b_k}``-invariant given the past, and the bias this coupling
            introduces is ``O(1/N)``; use ``adapt=False`` for a strictly unbiased ``Ẑ``.
        target_acceptance_rate: ``a*``; default the kernel's ``optimal_acceptance_rate``
            (0.65 HMC and NUTS, 0.574 MALA, 0.234 RWM).
        betas: explicit path ``(num_intermediate + 2,)`` (overrides ``spacing``).
        spacing: ``"linear"`` or ``"geometric"`` (see :func:`ais_betas`).

    Cost, exactly: per chain, ``K`` evaluations of ``(f₀, f₁)`` for the weights (with the
    gradient at the ``K - 1`` that seed a transition, when the kernel uses gradients) plus
    ``(K - 1)·m·c`` for the transitions (``c = L`` for HMC, 1 for MALA and RWM).
    Raises ``TypeError`` for a transition of another kind and ``ValueError`` for shapes
    that do not fit (and for an RWM scale per coordinate, as one scalar is adapted).
    """
    kernel = _check_transition(transition)
    x0 = jnp.asarray(x0)
    if x0.ndim < 1:
        raise ValueError(f"x0 must have shape (N, *event_shape), got {x0.shape}")
    n = x0.shape[0]
    dtype = x0.dtype if jnp.issubdtype(x0.dtype, jnp.floating) else jnp.result_type(float)
    x0 = x0.astype(dtype)
    if log_q0 is not None:
        log_q0 = jnp.asarray(log_q0, dtype)
        if log_q0.shape != (n,):
            raise ValueError(f"log_q0 must have shape ({n},), got {log_q0.shape}")
    if int(num_mcmc_steps) < 1:
        raise ValueError(f"num_mcmc_steps must be >= 1, got {num_mcmc_steps}")
    num_intermediate = int(num_intermediate)
    if betas is None:
        b_np = ais_betas(num_intermediate, spacing)
    else:
        b_np = np.asarray(betas, np.float64)
        if b_np.shape != (num_intermediate + 2,):
            raise ValueError(
                f"betas must have shape ({num_intermediate + 2},) (b_0 = 0, the "
                f"{num_intermediate} intermediates, b_K = 1), got {b_np.shape}"
            )
        if b_np[0] != 0 or b_np[-1] != 1 or np.any(np.diff(b_np) <= 0):
            raise ValueError(f"betas must increase strictly from 0 to 1, got {b_np}")
    b = jnp.asarray(b_np, dtype)

    if kernel is not None and jnp.ndim(kernel.tuned_value()):
        raise ValueError(
            f"AIS adapts one scalar {kernel.tuned_parameter}; {type(kernel).__name__} has one "
            f"of shape {jnp.shape(kernel.tuned_value())}: give a scalar"
        )
    steps0 = _initial_step(kernel, step_size, num_intermediate, dtype)
    if target_acceptance_rate is None:
        target_acceptance_rate = 0.65 if kernel is None else kernel.optimal_acceptance_rate
    a_star = float(target_acceptance_rate)
    do_adapt = bool(adapt) and kernel is not None

    def log_pi(beta):
        return lambda x: (1 - beta) * log_density_0(x) + beta * log_density_1(x)

    needs_grad = kernel is not None and kernel.uses_gradient
    if kernel is not None:
        params0 = kernel._initial_params(x0[0])
        name = kernel.tuned_parameter

    def both(x):
        """``(f₀, f₁)`` and, if needed, their gradients at one ``x``."""
        if needs_grad:
            l0, g0 = jax.value_and_grad(log_density_0)(x)
            l1, g1 = jax.value_and_grad(log_density_1)(x)
            return l0, l1, g0, g1
        return log_density_0(x), log_density_1(x), None, None

    def move(key, x, vals, beta, eps):
        """``m`` transitions on ``π_beta`` from one ``x``; returns ``x'``, acc, counts."""
        if kernel is None:
            keys = jax.random.split(key, num_mcmc_steps)

            def exact_body(xx, k):
                return transition(k, xx, beta), None

            x, _ = jax.lax.scan(exact_body, x, keys)
            z = jnp.zeros((), jnp.int32)
            return x, jnp.ones((), dtype), z, z
        l0, l1, g0, g1 = vals
        grad = (1 - beta) * g0 + beta * g1 if needs_grad else None
        state = kernel._bj_state(x, (1 - beta) * l0 + beta * l1, grad)
        params = dict(params0)
        params[name] = jnp.broadcast_to(eps, jnp.shape(params0[name])).astype(dtype)
        fn = log_pi(beta)

        def body(st, k):
            st, info = kernel._bj_step(k, st, fn, params)
            return st, info

        state, infos = jax.lax.scan(body, state, jax.random.split(key, num_mcmc_steps))
        return (
            state.position,
            jnp.mean(infos.acceptance_rate).astype(dtype),
            jnp.sum(infos.num_energy_evals),
            jnp.sum(infos.num_grad_evals),
        )

    def values(x, with_grad):
        if with_grad and needs_grad:
            return jax.vmap(both)(x)
        l0, l1 = jax.vmap(lambda xx: (log_density_0(xx), log_density_1(xx)))(x)
        return l0, l1, None, None

    def advance(x, vals, log_w, log_mult, key, eps_j, b_prev, b_next):
        """Weight increment at ``x`` (values ``vals``), then the moves on ``π_{b_next}``."""
        log_w = log_w + (b_next - b_prev) * (vals[1] - vals[0])
        eps = eps_j * jnp.exp(log_mult)
        x, acc, ne, ng = jax.vmap(move, in_axes=(0, 0, 0, None, None))(
            jax.random.split(key, n), x, vals, b_next, eps
        )
        acc_mean = jnp.mean(jnp.where(jnp.isfinite(acc), acc, 0.0))
        delta = adaptation_rate * (acc_mean - a_star) if do_adapt else jnp.zeros((), dtype)
        out = (acc_mean, eps, eps * jnp.exp(delta), jnp.sum(ne), jnp.sum(ng))
        return x, log_w, log_mult + delta, out

    vals = values(x0, num_intermediate > 0)
    if log_q0 is not None:
        vals = (log_q0,) + tuple(vals[1:])
    log_w = jnp.zeros((n,), dtype)
    log_mult = jnp.zeros((), dtype)
    x = x0
    outs = []
    if num_intermediate > 1:

        def body(carry, inp):
            x, vals, log_w, log_mult = carry
            k, eps_j, b_prev, b_next = inp
            x, log_w, log_mult, out = advance(x, vals, log_w, log_mult, k, eps_j, b_prev, b_next)
            return (x, values(x, True), log_w, log_mult), out

        m = num_intermediate - 1
        key, k_scan = jax.random.split(key)
        inputs = (jax.random.split(k_scan, m), steps0[:m], b[:m], b[1 : m + 1])
        (x, vals, log_w, log_mult), out = jax.lax.scan(body, (x, vals, log_w, log_mult), inputs)
        outs.append(out)
    if num_intermediate > 0:
        j = num_intermediate - 1
        x, log_w, log_mult, out = advance(x, vals, log_w, log_mult, key, steps0[j], b[j], b[j + 1])
        outs.append(tuple(o[None] for o in out))
        vals = values(x, False)
        acc, used, adapted, ne, ng = (jnp.concatenate(z) for z in zip(*outs, strict=True))
        num_energy = jnp.sum(ne) + n * (num_intermediate + 1)
        num_grad = jnp.sum(ng) + (n * num_intermediate if needs_grad else 0)
    else:
        acc = used = adapted = jnp.zeros((0,), dtype)
        num_energy, num_grad = n, 0
    log_w = log_w + (b[-1] - b[-2]) * (vals[1] - vals[0])
    return AISResult(
        samples=x,
        log_w=log_w,
        log_Z=_log_Z_estimate(log_w),
        ess_fraction=_ess_fraction(log_w),
        num_energy_evals=jnp.asarray(num_energy, jnp.int32),
        num_grad_evals=jnp.asarray(num_grad, jnp.int32),
        acceptance=acc,
        step_size=used,
        adapted_step_size=adapted,
        betas=b,
    )
