"""One target, one energy-evaluation budget, many samplers: the fair flow-vs-MCMC comparison.

``compare_samplers`` runs every method on the SAME target with the SAME budget of target
energy evaluations (exact counts from :func:`physgen.samplers.run_mcmc`; a gradient evaluation
counts as an energy evaluation) and scores them with one set of diagnostics:

- MCMC (HMC, NUTS, MALA, parallel tempering, flow independence Metropolis): the estimate of a
  scalar observable (default: the indicator of state B, so the estimate is ``p_B``) with its
  Monte Carlo standard error (Wolff's Γ-method, chains pooled as replicas), the bulk ESS of
  the observable (BlackJAX, rank-normalised split chains), and ``ΔF_{B−A} = −log(p̂_B/p̂_A)``
  with a delta-method error: the MCSE of ``g = 1_B/p̂_B − 1_A/p̂_A``, so autocorrelation and
  the covariance of the two indicators are both accounted for.
- Tempered SMC: ``num_chains`` independent runs; errors from the spread of the run means
  (particles within a run are correlated by resampling), ESS ``= σ²/se²``.
- "BG reweighted": ``N`` independent flow samples, self-normalised importance weights,
  Kish's ESS and delta-method errors (``physgen.reweighting``). The flow's training
  evaluations are reported as a separate column and in a total.
- "BG stratified": stratified importance sampling over the states. A flow sample costs no
  energy evaluation, so the flow's own stratum masses ``q_S`` (S = A, B, rest) are counted
  from a large pool of free draws; the energy budget is spent only on importance weights
  ``w = p̃/q`` of equally many pool members per stratum. ``Z_S = q_S E_{q|S}[w]``, so
  ``ΔF_{B−A} = −log(q_B/q_A) − log(w̄_B/w̄_A)``: the rare state B gets as many weighted
  samples as A, where plain reweighting needs ``~1/(p_B se²)`` samples. Flow draws are
  reported in ``num_flow_evals``.

Wall times exclude compilation: each method is run twice with the same key and shapes and the
second (cached) run is timed. :func:`evals_to_reach` finds, by doubling the budget, how many
energy evaluations a method needs to estimate ``ΔF_{B−A}`` to a given standard error with the
estimate within ``max_abs_z`` standard errors of the exact value.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from physgen import reweighting as rw
from physgen.diagnostics import comparison_table, ess_bulk, mcse, render_table
from physgen.samplers import (
    HMC,
    MALA,
    NUTS,
    FlowIndependenceMetropolis,
    ParallelTempering,
    TemperedSMC,
    geometric_ladder,
    run_mcmc,
)

MCMC_METHODS = ("HMC", "NUTS", "MALA", "PT", "SMC")
BG_METHODS = ("BG reweighted", "BG stratified", "BG as IMH proposal")
DEFAULT_METHODS = MCMC_METHODS + BG_METHODS


@dataclass(frozen=True)
class SamplerSettings:
    """Hyperparameters of the baselines (all evaluated at the same budget).

    ``step_size`` is the starting (HMC, NUTS, MALA; adapted in warm-up) or fixed (inner
    kernels of PT and SMC, which do not adapt) leapfrog step at ``β = 1``. PT uses
    ``pt_replicas`` inverse temperatures ``geometric_ladder(pt_replicas, pt_beta_min)`` with
    an inner HMC of ``pt_leapfrog`` steps; SMC an inner HMC of ``smc_leapfrog`` steps,
    ``smc_mcmc_steps`` moves per tempering step, the reference ``N(0, smc_reference_scale²)``
    and ``smc_particles`` particles per run (as many runs as the budget pays for).
    ``warmup_fraction`` of each chain's budget goes to warm-up (adaptation / burn-in).
    "BG stratified" counts stratum masses on ``strat_pool`` free flow draws and needs
    ``strat_min_per_stratum`` weighted samples in each state it estimates.
    """

    step_size: float = 0.1
    hmc_leapfrog: int = 10
    nuts_cost_guess: float = 10.0
    pt_replicas: int = 6
    pt_beta_min: float = 0.1
    pt_leapfrog: int = 5
    smc_leapfrog: int = 5
    smc_mcmc_steps: int = 4
    smc_reference_scale: float = 3.0
    smc_particles: int = 64
    warmup_fraction: float = 0.2
    min_warmup: int = 20
    is_chunk: int = 1 << 16
    strat_pool: int = 1 << 20
    strat_min_per_stratum: int = 32


@dataclass
class _Run:
    """Raw output of one method at one budget (before estimation)."""

    kind: str  # "mcmc" | "smc" | "is" | "strat"
    x: Any = None  # mcmc (chains, S, *ev); smc (runs, N, *ev); is, strat (N, *ev)
    logw: Any = None  # is, strat
    num_energy_evals: int = 0
    num_grad_evals: int = 0
    num_flow_evals: int = 0
    acceptance_rate: float | None = None
    info: dict = field(default_factory=dict)
    labels: Any = None  # strat: stratum of each weighted sample (0 = A, 1 = B, 2 = rest)


class BudgetTooSmall(Exception):
    """The budget does not pay for warm-up and at least 4 samples per chain."""


# ----------------------------------------------------------------------------- helpers
def _to_float(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _split(budget: int, num_chains: int, init: int, warmup_cost: int, step_cost: int,
           s: SamplerSettings) -> tuple[int, int]:
    """``(num_warmup, num_samples)`` per chain for a fixed cost per transition."""
    per_chain = budget // num_chains - init - warmup_cost
    transitions = per_chain // step_cost
    warm = max(s.min_warmup, int(s.warmup_fraction * transitions))
    samples = transitions - warm
    if samples < 4:
        raise BudgetTooSmall(
            f"budget {budget:,} gives {transitions} transitions per chain at {step_cost} "
            f"evaluations each; need {warm} warm-up + 4 samples"
        )
    return warm, samples


def _mcmc_run(res, **info) -> _Run:
    return _Run("mcmc", res.samples, None, int(res.num_energy_evals), int(res.num_grad_evals),
                int(res.num_flow_evals), float(np.mean(np.asarray(res.acceptance_rate))), info)


def _initial(initial_position, num_chains, event_shape):
    if initial_position is None:
        return None
    x0 = jnp.asarray(initial_position)
    if x0.shape == tuple(event_shape):
        x0 = jnp.broadcast_to(x0, (num_chains,) + tuple(event_shape))
    return x0


# ----------------------------------------------------------------------------- methods
def _run_hmc(key, target, budget, num_chains, x0, s: SamplerSettings) -> _Run:
    L = s.hmc_leapfrog
    # init: 1; window adaptation re-initialises once (1) and costs L per warm-up step
    warm, n = _split(budget, num_chains, 2, 0, L, s)
    res = run_mcmc(key, HMC(s.step_size, L), target, num_chains=num_chains, num_samples=n,
                   num_warmup=warm, initial_position=x0)
    return _mcmc_run(res, num_warmup=warm, leapfrog=L,
                     step_size=float(np.median(np.asarray(res.extras["step_size"]))))


def _run_mala(key, target, budget, num_chains, x0, s: SamplerSettings) -> _Run:
    warm, n = _split(budget, num_chains, 1, 0, 1, s)
    res = run_mcmc(key, MALA(s.step_size), target, num_chains=num_chains, num_samples=n,
                   num_warmup=warm, initial_position=x0)
    return _mcmc_run(res, num_warmup=warm,
                     step_size=float(np.median(np.asarray(res.extras["step_size"]))))


def _run_nuts(key, target, budget, num_chains, x0, s: SamplerSettings) -> _Run:
    """Warm-up sized by a guessed cost per transition, then fixed-size sampling chunks
    (continued from the adapted state) while the remaining budget pays for one more chunk at
    the last chunk's measured cost (the first chunk always runs and counts, so a budget
    mostly spent in warm-up is overshot by one chunk). Two compiled shapes for any budget."""
    per_chain = budget // num_chains
    warm = max(s.min_warmup, int(s.warmup_fraction * per_chain / s.nuts_cost_guess))
    if per_chain < 2 + warm + 4:
        raise BudgetTooSmall(f"budget {budget:,} is too small for NUTS warm-up")
    chunk = 25
    sampler = NUTS(s.step_size)
    k0, key = jax.random.split(key)
    r = run_mcmc(k0, sampler, target, num_chains=num_chains, num_samples=4, num_warmup=warm,
                 initial_position=x0)
    parts, spent, cost = [r], int(r.num_energy_evals), None
    while cost is None or spent + cost <= budget:  # every chunk run is counted
        r = run_mcmc(jax.random.fold_in(key, len(parts)), sampler, target,
                     num_chains=num_chains, num_samples=chunk, num_warmup=0,
                     initial_state=parts[-1].final_state)
        parts.append(r)
        spent += int(r.num_energy_evals)
        cost = int(r.num_energy_evals)
    x = jnp.concatenate([p.samples for p in parts], axis=1)
    sampling = parts[1:]
    acc = float(np.mean([np.mean(np.asarray(p.acceptance_rate)) for p in sampling]))
    per_transition = sum(p.num_energy_evals for p in sampling) / (
        num_chains * chunk * len(sampling))
    return _Run("mcmc", x, None, spent, sum(int(p.num_grad_evals) for p in parts), 0, acc,
                dict(num_warmup=warm, mean_leapfrog_per_transition=per_transition,
                     step_size=float(np.median(np.asarray(
                         parts[-1].final_state.params["step_size"])))))


def _run_pt(key, target, budget, num_chains, x0, s: SamplerSettings) -> _Run:
    K, L = s.pt_replicas, s.pt_leapfrog
    betas = geometric_ladder(K, s.pt_beta_min)
    sampler = ParallelTempering(HMC(s.step_size, L, adapt=False), betas)
    warm, n = _split(budget, num_chains, 1, 0, K * L, s)
    res = run_mcmc(key, sampler, target, num_chains=num_chains, num_samples=n,
                   num_warmup=warm, initial_position=x0)
    return _mcmc_run(res, num_warmup=warm, num_replicas=K, beta_min=s.pt_beta_min,
                     leapfrog=L, swap_acceptance=np.asarray(res.extras["swap_acceptance"]))


def _smc_sampler(s: SamplerSettings) -> TemperedSMC:
    return TemperedSMC(HMC(s.step_size, s.smc_leapfrog, adapt=False),
                       num_mcmc_steps=s.smc_mcmc_steps,
                       reference_scale=s.smc_reference_scale)


def _run_smc(key, target, budget, s: SamplerSettings) -> _Run:
    """Independent SMC runs of ``smc_particles`` particles, one after another (one compiled
    shape), while the budget pays for another run at the last run's measured cost (the first
    run always counts). Needs at least 2 runs for a between-run error."""
    sampler = _smc_sampler(s)
    runs, spent, cost = [], 0, None
    while cost is None or spent + cost <= budget:
        r = run_mcmc(jax.random.fold_in(key, len(runs)), sampler, target, num_chains=1,
                     num_samples=s.smc_particles)
        runs.append(r)
        cost = int(r.num_energy_evals)
        spent += cost
    if len(runs) < 2:
        raise BudgetTooSmall(f"budget {budget:,} pays for {len(runs)} SMC run of "
                             f"{s.smc_particles} particles ({cost:,} evaluations per run)")
    x = jnp.concatenate([r.samples for r in runs], axis=0)
    return _Run("smc", x, None, spent, sum(int(r.num_grad_evals) for r in runs), 0,
                float(np.mean([float(np.asarray(r.acceptance_rate)[0]) for r in runs])),
                dict(num_runs=len(runs), num_particles_per_run=s.smc_particles,
                     tempering_steps=[int(np.asarray(r.extras["num_tempering_steps"])[0])
                                      for r in runs]))


def _run_imh(key, target, budget, num_chains, flow, s: SamplerSettings) -> _Run:
    # init: one energy per chain (the start is a flow draw); one energy per transition
    warm, n = _split(budget, num_chains, 1, 0, 1, s)
    k0, key = jax.random.split(key)
    x0 = _flow_sample(flow, k0, num_chains)  # jitted (run_mcmc's default draw is eager)
    res = run_mcmc(key, FlowIndependenceMetropolis(flow), target, num_chains=num_chains,
                   num_samples=n, num_warmup=warm, initial_position=x0)
    return _mcmc_run(res, num_warmup=warm)


@eqx.filter_jit
def _flow_sample(flow, key, n: int):
    return flow.sample(key, (n,)).astype(jnp.result_type(float))


@eqx.filter_jit
def _flow_logw(flow, target, key, n: int):
    x, log_q = flow.sample_and_log_prob(key, (n,))
    x = x.astype(jnp.result_type(float))
    return x, jax.vmap(target.log_density)(x) - log_q


def _run_is(key, target, budget, flow, s: SamplerSettings) -> _Run:
    """``budget`` flow samples in equal chunks of at most ``is_chunk`` (so the total is at
    most ``count - 1`` below the budget), one energy evaluation each."""
    count = max(1, math.ceil(int(budget) / s.is_chunk))
    size = int(budget) // count
    n = count * size
    sizes = [size] * count
    xs, lws = [], []
    for k, m in zip(jax.random.split(key, len(sizes)), sizes, strict=True):
        x, lw = _flow_logw(flow, target, k, m)
        xs.append(x)
        lws.append(lw)
    x, logw = (jnp.concatenate(xs), jnp.concatenate(lws)) if len(xs) > 1 else (xs[0], lws[0])
    logw.block_until_ready()
    return _Run("is", x, logw, n, 0, n, None, {})


@eqx.filter_jit
def _flow_strata(flow, key, n: int, in_a, in_b):
    x = flow.sample(key, (n,)).astype(jnp.result_type(float))
    a, b = in_a(x), in_b(x)
    return x, jnp.where(a, 0, jnp.where(b, 1, 2))


@eqx.filter_jit
def _target_logw(flow, target, x):
    return jax.vmap(target.log_density)(x) - flow.log_prob(x)


def _run_stratified(key, target, budget, flow, states, s: SamplerSettings) -> _Run:
    """Stratified importance sampling (see the module docstring): ``strat_pool`` free flow
    draws give the stratum counts; ``budget`` energy evaluations are shared equally by the
    non-empty strata (a stratum with fewer pool members than its share gives the rest to the
    others). Members of a stratum, taken in pool order, are i.i.d. ``q|S`` given the counts."""
    if states is None:
        raise ValueError("'BG stratified' needs states=(in_A, in_B)")
    budget = int(budget)
    chunks = max(1, math.ceil(s.strat_pool / s.is_chunk))
    xs, labels = [], []
    for k in jax.random.split(key, chunks):
        x, lab = _flow_strata(flow, k, s.strat_pool // chunks, states[0], states[1])
        xs.append(np.asarray(x))
        labels.append(np.asarray(lab))
    x, lab = np.concatenate(xs), np.concatenate(labels)
    counts = np.bincount(lab, minlength=3)
    take = np.zeros(3, dtype=int)
    left, open_ = budget, [k for k in range(3) if counts[k] > 0]
    while open_ and left > 0:  # equal shares, capped by the pool
        share = max(1, left // len(open_))
        for k in list(open_):
            add = min(share, counts[k] - take[k], left)
            take[k] += add
            left -= add
            if take[k] == counts[k]:
                open_.remove(k)
            if left == 0:
                break
    if take[0] < s.strat_min_per_stratum or take[1] < s.strat_min_per_stratum:
        raise BudgetTooSmall(
            f"budget {budget:,} gives {take[0]} / {take[1]} weighted samples in A / B; need "
            f"{s.strat_min_per_stratum} each (pool counts {counts[0]:,} / {counts[1]:,})")
    idx = np.concatenate([np.flatnonzero(lab == k)[: take[k]] for k in range(3)])
    xw = jnp.asarray(x[idx])
    logw = _target_logw(flow, target, xw)
    logw.block_until_ready()
    n = int(take.sum())
    return _Run("strat", xw, logw, n, 0, int(x.shape[0]) + n, None,
                {"pool": int(x.shape[0]), "pool_counts_A_B_rest": counts.tolist(),
                 "weighted_A_B_rest": take.tolist()}, labels=lab[idx])


def _stratified_estimate(run: _Run, observable) -> dict:
    """``Z_S = q_S w̄_S`` per stratum; ``p_B``-type observable and ``ΔF_{B−A}`` with
    delta-method errors: ``Cov(log Ẑ_S, log Ẑ_T) = δ_ST Var(w_S)/(n_S w̄_S²) +
    (δ_ST/q_S − 1)/M`` (sample means and multinomial pool counts)."""
    lab = run.labels
    counts = np.asarray(run.info["pool_counts_A_B_rest"], dtype=np.float64)
    M = counts.sum()
    logw = np.asarray(run.logw, dtype=np.float64)
    if not np.all(np.isfinite(logw)):
        raise FloatingPointError("non-finite importance weights in 'BG stratified'")
    shift = logw.max()
    w = np.exp(logw - shift)
    o = np.asarray(observable(run.x), dtype=np.float64)
    present = [k for k in range(3) if np.any(lab == k)]
    log_z, var_log_w, o_mean, o_cov = {}, {}, {}, {}
    for k in present:
        wk, ok = w[lab == k], o[lab == k]
        m = wk.mean()
        log_z[k] = math.log(counts[k] / M) + math.log(m) + shift
        var_log_w[k] = float(wk.var(ddof=1) / (wk.size * m * m)) if wk.size > 1 else math.inf
        o_mean[k] = float(np.sum(wk * ok) / np.sum(wk))  # ratio estimate of E_{p|S}[o]
        o_cov[k] = float(np.mean((wk / m) ** 2 * (ok - o_mean[k]) ** 2) / wk.size)
    K = len(present)
    cov = np.zeros((K, K))
    for i, k in enumerate(present):
        for j, m in enumerate(present):
            cov[i, j] = ((1.0 / (counts[k] / M) if k == m else 0.0) - 1.0) / M
        cov[i, i] += var_log_w[k]
    lz = np.array([log_z[k] for k in present])
    p = np.exp(lz - lz.max())
    p /= p.sum()
    om = np.array([o_mean[k] for k in present])
    est = float(p @ om)
    grad = p * (om - est)  # ∂ est / ∂ log Z_S
    var = float(grad @ cov @ grad + np.sum(p**2 * np.array([o_cov[k] for k in present])))
    se = math.sqrt(max(var, 0.0))
    i_a, i_b = present.index(0), present.index(1)
    d_value = -(lz[i_b] - lz[i_a])
    d_var = cov[i_a, i_a] + cov[i_b, i_b] - 2 * cov[i_a, i_b]
    # target variance of o, for the variance-equivalent ESS σ²/se² (as for SMC)
    o2 = np.array([np.sum(w[lab == k] * o[lab == k] ** 2) / np.sum(w[lab == k])
                   for k in present])
    o_var = float(p @ o2 - est**2)
    ess = min(float(run.num_energy_evals), o_var / var) if var > 0 else None
    n = int(run.num_energy_evals)
    return {"estimate": est, "error": se, "ess": ess, "num_samples": n,
            "ess_fraction": None if ess is None else ess / n,
            "delta_F": {"value": float(d_value), "stderr": float(math.sqrt(d_var))},
            "fraction_of_samples_in_B": float(counts[1] / M)}


def _timed(fn: Callable[[], _Run], time_it: bool) -> tuple[_Run, float]:
    """Run ``fn`` (compiling), then again with warm caches; time the second run."""
    if time_it:
        out = fn()
        jax.block_until_ready(out.x)
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out.x)
    if out.logw is not None:
        jax.block_until_ready(out.logw)
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------- estimation
def _delta_f_from_chains(a: np.ndarray, b: np.ndarray, independent_runs: bool):
    """``ΔF = −log(p̂_B/p̂_A)`` and its delta-method error from indicator arrays (R, S)."""
    p_a, p_b = float(a.mean()), float(b.mean())
    if p_a <= 0 or p_b <= 0:
        value = math.inf if p_b <= 0 else -math.inf
        return value, math.nan
    g = b / p_b - a / p_a
    if independent_runs:
        m = g.mean(axis=1)
        se = float(np.std(m, ddof=1) / math.sqrt(m.size))
    else:
        se = mcse(g)
    return -math.log(p_b / p_a), se


def _estimate(run: _Run, observable, states) -> dict:
    """Estimate, error, ESS and ΔF of one run (no exact values here)."""
    out: dict = {}
    if run.kind == "strat":
        return _stratified_estimate(run, observable)
    if run.kind == "is":
        o = jnp.asarray(observable(run.x), run.logw.dtype)
        e = rw.expectation(run.logw, o)
        out.update(estimate=float(e.value), error=float(e.stderr),
                   ess=float(rw.kish_ess(run.logw)), num_samples=int(run.logw.shape[0]))
        out["ess_fraction"] = out["ess"] / out["num_samples"]
        if states is not None:
            in_a, in_b = states[0](run.x), states[1](run.x)
            d = rw.free_energy_difference(run.logw, in_a, in_b)
            out["delta_F"] = {"value": float(d.value), "stderr": float(d.stderr)}
            out["fraction_of_samples_in_B"] = float(jnp.mean(in_b))
        return out

    o = np.asarray(observable(run.x), dtype=np.float64)  # (R, S)
    n = o.size
    if run.kind == "smc":
        m = o.mean(axis=1)
        est, se = float(m.mean()), float(np.std(m, ddof=1) / math.sqrt(m.size))
        var = float(o.var())
        ess = min(float(n), var / se**2) if se > 0 else None
    else:
        est, se = float(o.mean()), mcse(o)
        # bulk ESS is undefined (BlackJAX returns 0 or nan) for a constant observable
        ess = _to_float(ess_bulk(jnp.asarray(o))) if o.max() > o.min() else None
    out.update(estimate=est, error=se, ess=ess, num_samples=int(n))
    if states is not None:
        a = np.asarray(states[0](run.x), dtype=np.float64)
        b = np.asarray(states[1](run.x), dtype=np.float64)
        value, dse = _delta_f_from_chains(a, b, run.kind == "smc")
        out["delta_F"] = {"value": value, "stderr": dse}
        out["chains_visiting_B"] = int(np.sum(np.any(b > 0, axis=1)))
        out["num_chains"] = int(b.shape[0])
    return out


def _z(value, stderr, exact):
    if exact is None or value is None or stderr is None:
        return None
    if not (math.isfinite(value) and math.isfinite(stderr) and stderr > 0):
        return None
    return (value - exact) / stderr


# ----------------------------------------------------------------------------- public API
def run_method(key, target, method: str, budget: int, *, num_chains: int = 8, flow=None,
               initial_position=None, settings: SamplerSettings | None = None,
               time_it: bool = True, states=None) -> tuple[_Run, float]:
    """Run one method at one energy budget; returns the raw run and its wall time (s).

    ``method`` is one of :data:`DEFAULT_METHODS`. ``initial_position`` (an event, or one per
    chain) starts HMC, NUTS, MALA and PT; SMC starts from its reference and the BG methods
    from the flow. ``states = (in_A, in_B)`` define the strata of "BG stratified". Raises
    :class:`BudgetTooSmall` when the budget cannot pay for warm-up.
    """
    s = settings or SamplerSettings()
    x0 = _initial(initial_position, num_chains, target.event_shape)
    if method in BG_METHODS and flow is None:
        raise ValueError(f"method {method!r} needs a trained flow")
    if method == "HMC":
        fn = lambda: _run_hmc(key, target, budget, num_chains, x0, s)
    elif method == "NUTS":
        fn = lambda: _run_nuts(key, target, budget, num_chains, x0, s)
    elif method == "MALA":
        fn = lambda: _run_mala(key, target, budget, num_chains, x0, s)
    elif method == "PT":
        fn = lambda: _run_pt(key, target, budget, num_chains, x0, s)
    elif method == "SMC":
        fn = lambda: _run_smc(key, target, budget, s)
    elif method == "BG reweighted":
        fn = lambda: _run_is(key, target, budget, flow, s)
    elif method == "BG stratified":
        fn = lambda: _run_stratified(key, target, budget, flow, states, s)
    elif method == "BG as IMH proposal":
        fn = lambda: _run_imh(key, target, budget, num_chains, flow, s)
    else:
        raise ValueError(f"unknown method {method!r}; choose from {DEFAULT_METHODS}")
    return _timed(fn, time_it)


def method_label(method: str, settings: SamplerSettings | None = None) -> str:
    s = settings or SamplerSettings()
    return {
        "HMC": f"HMC (L={s.hmc_leapfrog}, adapted)",
        "NUTS": "NUTS (adapted)",
        "MALA": "MALA (adapted)",
        "PT": f"PT (HMC, K={s.pt_replicas}, β_min={s.pt_beta_min:g})",
        "SMC": f"tempered SMC (HMC, {s.smc_mcmc_steps} moves)",
    }.get(method, method)


def compare_samplers(
    key,
    target,
    *,
    energy_budget: int,
    num_chains: int = 8,
    flow=None,
    flow_train_evals: int = 0,
    flow_train_time: float | None = None,
    observable: Callable | None = None,
    states: tuple[Callable, Callable] | None = None,
    exact: dict | None = None,
    initial_position=None,
    methods: Sequence[str] | None = None,
    settings: SamplerSettings | None = None,
    log: Callable[[str], Any] | None = print,
) -> list[dict]:
    """Run every method on ``target`` with the same sampling budget of energy evaluations.

    Args:
        key: PRNG key (each method gets ``fold_in(key, i)``).
        target: a physgen target.
        energy_budget: target energy evaluations per method for sampling (warm-up included;
            the BG's training evaluations come on top and are reported separately).
        num_chains: MCMC chains (and independent SMC runs).
        flow, flow_train_evals, flow_train_time: a trained flow for the two BG methods
            (omitted without a flow) and what its training cost.
        observable: ``x (*batch, *event) -> (*batch,)`` scalar observable (jnp); default the
            indicator of state B.
        states: ``(in_A, in_B)``, boolean functions of the same form, for ``ΔF_{B−A}``.
        exact: optional exact values ``{"observable": ..., "delta_F": ...}``.
        initial_position: start of HMC/NUTS/MALA/PT chains (one event, or one per chain);
            default ``N(0, I)`` draws.
        methods: subset of :data:`DEFAULT_METHODS` (default: all, the BG ones if a flow).
        settings: :class:`SamplerSettings`.
        log: progress printer (``None`` for silence).

    Returns:
        one dict per method: the columns of :func:`physgen.diagnostics.comparison_table`
        (``method, num_samples, num_energy_evals, wall_time_s, ess, ess_per_1k_evals,
        ess_per_s, estimate, error, exact, z_score``) plus ``train_energy_evals``,
        ``total_energy_evals``, ``ess_per_1k_total_evals``, ``delta_F`` (``value, stderr,
        exact, z_score``), ``num_grad_evals``, ``num_flow_evals``, ``acceptance_rate``,
        ``info`` (sampler details) and ``note`` (why a method failed or what it missed).
    """
    s = settings or SamplerSettings()
    exact = exact or {}
    if observable is None:
        if states is None:
            raise ValueError("give an observable or states=(in_A, in_B)")
        observable = lambda x: states[1](x).astype(jnp.result_type(float))
    if methods is None:
        methods = MCMC_METHODS + (BG_METHODS if flow is not None else ())
    log = log or (lambda *_: None)
    rows = []
    for i, method in enumerate(methods):
        label = method_label(method, s)
        is_bg = method in BG_METHODS
        train = int(flow_train_evals) if is_bg else 0
        t0 = time.perf_counter()
        try:
            run, wall = run_method(jax.random.fold_in(key, i), target, method, energy_budget,
                                   num_chains=num_chains, flow=flow, states=states,
                                   initial_position=initial_position, settings=s)
        except BudgetTooSmall as err:
            log(f"  {label:<34} skipped: {err}")
            rows.append(_empty_row(label, method, train, str(err)))
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = _estimate(run, observable, states)
        short = any("no window found" in str(w.message) for w in caught)
        base = {
            "method": label, "num_energy_evals": run.num_energy_evals, "wall_time": wall,
            "estimate": est["estimate"], "error": est["error"], "ess": est["ess"],
            "num_samples": est["num_samples"], "exact": exact.get("observable"),
        }
        row = comparison_table([base])[0]
        total = run.num_energy_evals + train
        row.update(
            key=method,
            train_energy_evals=train,
            total_energy_evals=total,
            ess_per_1k_total_evals=(_to_float(1000.0 * row["ess"] / total)
                                    if row["ess"] is not None else None),
            train_time_s=flow_train_time if is_bg else None,
            num_grad_evals=run.num_grad_evals,
            num_flow_evals=run.num_flow_evals,
            acceptance_rate=run.acceptance_rate,
            info=run.info,
            note=_note(est, run, short),
        )
        for k in ("ess_fraction", "chains_visiting_B", "num_chains", "fraction_of_samples_in_B"):
            if k in est:
                row[k] = est[k]
        if "delta_F" in est:
            d = dict(est["delta_F"])
            d["exact"] = exact.get("delta_F")
            d["z_score"] = _z(d["value"], d["stderr"], d["exact"])
            row["delta_F"] = d
        rows.append(row)
        log(f"  {label:<34} {row['num_energy_evals']:>10,} evals  ESS {_fmt(row['ess'])}  "
            f"estimate {_fmt(row['estimate'])} ± {_fmt(row['error'])}  "
            f"ΔF {_fmt(row.get('delta_F', {}).get('value'))} ± "
            f"{_fmt(row.get('delta_F', {}).get('stderr'))}  "
            f"[{time.perf_counter() - t0:.1f} s incl. compile]")
    return rows


def _note(est: dict, run: _Run, short_chains: bool = False) -> str:
    notes = []
    if short_chains:
        notes.append("chains shorter than their autocorrelation: error underestimated")
    unit = "runs" if run.kind == "smc" else "chains"
    if "chains_visiting_B" in est and est["chains_visiting_B"] == 0:
        notes.append(f"no {unit[:-1]} visited B")
    elif "chains_visiting_B" in est and est["chains_visiting_B"] < est["num_chains"]:
        notes.append(f"{est['chains_visiting_B']} of {est['num_chains']} {unit} visited B")
    if run.kind == "is" and est.get("fraction_of_samples_in_B", 1.0) == 0:
        notes.append("no flow sample in B")
    if run.kind == "mcmc" and est["ess"] is None:
        notes.append("observable constant: ESS undefined")
    return "; ".join(notes)


def _empty_row(label, method, train, note) -> dict:
    row = {k: None for k in ("num_samples", "num_energy_evals", "wall_time_s", "ess",
                             "ess_per_1k_evals", "ess_per_s", "estimate", "error", "exact",
                             "z_score")}
    row.update(method=label, key=method, train_energy_evals=train, total_energy_evals=None,
               ess_per_1k_total_evals=None, note=note)
    return row


def _fmt(v, digits=4) -> str:
    if v is None:
        return "—"
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:.3e}"
    return f"{v:.{digits}g}"


def render_rows(rows: Sequence[dict], fmt: str = "text") -> str:
    """The comparison table (``physgen.diagnostics.render_table``) followed by a second table
    with the BG training cost, the total, and ``ΔF_{B−A}`` ± error against exact."""
    main = render_table(rows, fmt=fmt)
    header = ["method", "train evals", "total evals", "ESS / 1k total", "ΔF_B−A", "± error",
              "exact", "z", "note"]
    body = []
    for r in rows:
        d = r.get("delta_F") or {}
        body.append([r["method"], _fmt(r.get("train_energy_evals")),
                     _fmt(r.get("total_energy_evals")), _fmt(r.get("ess_per_1k_total_evals")),
                     _fmt(d.get("value")), _fmt(d.get("stderr")), _fmt(d.get("exact")),
                     _fmt(d.get("z_score"), 3), r.get("note") or ""])
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
    else:
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
        fmt_line = lambda cells: "  ".join(c.rjust(w) if 0 < i < len(cells) - 1 else c.ljust(w)
                                           for i, (c, w) in enumerate(zip(cells, widths,
                                                                          strict=True)))
        lines = [fmt_line(header), "  ".join("-" * w for w in widths)]
        lines += [fmt_line(b) for b in body]
    return main + "\n\n" + "\n".join(lines)


def _grow(budget: int, factor: float) -> int:
    return max(budget + 1, int(round(budget * factor)))


def evals_to_reach(
    key,
    target,
    method: str,
    *,
    states: tuple[Callable, Callable],
    exact_delta_F: float,
    se_target: float = 0.05,
    max_abs_z: float = 3.0,
    start_budget: int = 4_000,
    cap: int = 2_000_000,
    factor: float = 2.0,
    num_chains: int = 8,
    flow=None,
    flow_train_evals: int = 0,
    initial_position=None,
    settings: SamplerSettings | None = None,
    log: Callable[[str], Any] | None = print,
) -> dict:
    """Energy evaluations ``method`` needs for ``se(ΔF_{B−A}) ≤ se_target`` (kT) with
    ``|ΔF̂ − ΔF_exact| ≤ max_abs_z · se``.

    The sampling budget grows by ``factor`` (default: doubles) from ``start_budget`` until
    both hold or the budget would exceed ``cap`` (then ``reached = False``: "not reached
    within cap"). A budget whose
    chains are shorter than their autocorrelation window (the MCSE is then underestimated)
    does not count as reached. Each budget is a
    fresh run (key ``fold_in(key, budget)``), so the answer is the first budget of this
    sequence that succeeds for one seed: resolution a factor ``factor``, and noisy. The BG's
    training evaluations are added to ``total_energy_evals`` (training is paid once; a
    better-trained flow trades training evaluations for sampling ones).

    Returns ``{method, reached, sampling_energy_evals, train_energy_evals,
    total_energy_evals, cap, se_target, max_abs_z, history}`` with one history entry per
    budget tried (``budget, energy_evals, delta_F, stderr, z_score``).
    """
    if not factor > 1:
        raise ValueError(f"evals_to_reach needs factor > 1, got {factor}")
    s = settings or SamplerSettings()
    log = log or (lambda *_: None)
    train = int(flow_train_evals) if method in BG_METHODS else 0
    history = []
    budget = int(start_budget)
    reached = None
    while budget <= cap:
        try:
            run, _ = run_method(jax.random.fold_in(key, budget), target, method, budget,
                                num_chains=num_chains, flow=flow, states=states,
                                initial_position=initial_position, settings=s, time_it=False)
        except BudgetTooSmall:
            budget = _grow(budget, factor)
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            d = _estimate(run, states[1], states)["delta_F"]
        short = any("no window found" in str(w.message) for w in caught)
        z = _z(d["value"], d["stderr"], exact_delta_F)
        ok = (math.isfinite(d["stderr"]) and d["stderr"] <= se_target and z is not None
              and abs(z) <= max_abs_z and not short)
        history.append({"budget": budget, "energy_evals": run.num_energy_evals,
                        "delta_F": _to_float(d["value"]), "stderr": _to_float(d["stderr"]),
                        "z_score": z, "error_underestimated_short_chains": short})
        log(f"    {method:<20} budget {budget:>10,}: ΔF {_fmt(d['value'])} ± "
            f"{_fmt(d['stderr'])} (z {_fmt(z, 3)}){'  reached' if ok else ''}")
        if ok:
            reached = run.num_energy_evals
            break
        budget = _grow(budget, factor)
    return {
        "method": method,
        "reached": reached is not None,
        "sampling_energy_evals": reached,
        "train_energy_evals": train,
        "total_energy_evals": None if reached is None else reached + train,
        "cap": cap,
        "se_target": se_target,
        "max_abs_z": max_abs_z,
        "history": history,
    }
