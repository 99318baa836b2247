"""One target, one energy-evaluation budget, many samplers: the fair flow-vs-MCMC comparison.

:func:`compare_samplers` runs named sampler objects on the SAME target with the SAME budget of
target energy evaluations (exact counts; a gradient evaluation counts as an energy
evaluation) and scores them with one set of diagnostics. How a sampler spends a budget is
asked of it (:func:`run_with_budget`):

- a chain sampler with a fixed cost per transition (``transition_evals()``: HMC, MALA, RWM,
  parallel tempering, flow independence Metropolis) gets ``num_chains`` chains whose init,
  warm-up overhead and transitions fill the budget, ``warmup_fraction`` of the transitions
  in warm-up;
- one whose cost varies (NUTS) warms up for a number of transitions sized by a guessed cost,
  then samples in fixed-size chunks, continued from the adapted state, while the rest of
  the budget pays for one more chunk at the last chunk's measured cost;
- a particle sampler (:class:`AbstractParticleSampler`: tempered SMC) makes independent
  runs of ``num_particles`` particles while the budget pays for one more at the last run's
  cost;
- an importance sampler (:class:`AbstractImportanceSampler`) spends the budget on weighted
  draws of its flow.

Estimates of a scalar observable (default: the indicator of state B, so the estimate is
``p_B``) and of ``ΔF_{B−A} = −log(p̂_B/p̂_A)``:

- chains: Monte Carlo standard error (Geyer's initial monotone sequence, Stan's multi-chain
  form, :func:`physgen.diagnostics.mcse`), bulk ESS (BlackJAX, rank-normalised split
  chains), and for ``ΔF`` the MCSE of ``g = 1_B/p̂_B − 1_A/p̂_A`` (autocorrelation and the
  covariance of the indicators); chains shorter than 50 τ (error underestimated) and a
  rank-normalised split R̂ above 1.01 (chains that have not forgotten their start: a bias
  no error bar shows) are noted;
- particle runs: errors from the spread of the run means, ESS ``= σ²/se²``;
- importance sampling: self-normalised estimates, Kish's ESS with the Pareto k̂ of the
  log-weights beside it, delta-method errors (:mod:`physgen.reweighting`), and a note when
  k̂ or the ESS fails :func:`~physgen.reweighting.weight_diagnostics`; stratified draws:
  :func:`~physgen.reweighting.stratified_estimate` with ``ΔF`` between its first two strata,
  ESS ``= σ²/se²`` and the largest k̂ of the strata.

Samplers with a trained proposal (:class:`AbstractProposalSampler`) start their chains from
it and are charged its training evaluations in a separate column and in a total. Wall
times exclude compilation: each sampler runs twice with the same key and shapes, the second
(cached) run is timed. How many evaluations a sampler needs for a given standard error is
:func:`physgen.samplers.evals_to_reach` (:mod:`._reach`).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import reweighting as rw
from .._base import Array, Key
from ..diagnostics import (
    ShortChainWarning,
    comparison_table,
    ess_bulk,
    mcse,
    render_table,
    rhat,
)
from ..targets._base import AbstractTarget
from ._base import (
    AbstractImportanceSampler,
    AbstractParticleSampler,
    AbstractProposalSampler,
    AbstractSampler,
    BudgetTooSmall,
)
from ._run import run_mcmc

RHAT_THRESHOLD = 1.01  # Vehtari et al. (2021)


@dataclasses.dataclass(frozen=True)
class BudgetPolicy:
    """How a budget is split where the sampler leaves a choice.

    Chains: ``warmup_fraction`` of each chain's transitions (at least ``min_warmup``) go to
    warm-up, and at least ``min_samples`` must remain. Variable cost per transition: warm-up
    is sized by ``transition_cost_guess`` evaluations per transition and sampling runs in
    chunks of ``chunk_size`` transitions. Particle samplers: runs of ``num_particles``
    particles, at least ``min_runs`` of them (for a between-run error).
    """

    warmup_fraction: float = 0.2
    min_warmup: int = 20
    min_samples: int = 4
    transition_cost_guess: float = 10.0
    chunk_size: int = 25
    num_particles: int = 64
    min_runs: int = 2

    def __post_init__(self):
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not self.transition_cost_guess > 0:
            raise ValueError(
                f"transition_cost_guess must be > 0, got {self.transition_cost_guess}")
        for name, low in (("min_warmup", 0), ("min_samples", 1), ("chunk_size", 1),
                          ("num_particles", 1), ("min_runs", 2)):
            if int(getattr(self, name)) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")


class BudgetRun(NamedTuple):
    """What one sampler made of one energy budget, before estimation.

    ``samples``: ``(num_chains, num_samples, *event_shape)`` for chains,
    ``(num_runs, num_particles, *event_shape)`` for particle runs (``independent_runs``), or
    ``(N, *event_shape)`` weighted draws with ``log_w`` ``(N,)`` (and, stratified,
    ``strata`` ``(N,)`` and ``pool_counts`` ``(K,)``). Counts are exact totals; ``info``
    holds what the sampler reported (warm-up length, tuned parameters, swap rates, ...).
    """

    samples: Any
    num_energy_evals: int
    num_grad_evals: int = 0
    num_flow_evals: int = 0
    acceptance_rate: float | None = None
    log_w: Any = None
    strata: Any = None
    pool_counts: Any = None
    independent_runs: bool = False
    info: dict | None = None


# ----------------------------------------------------------------------------- spending
def _to_float(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _listed(extras: dict) -> dict:
    return {k: np.asarray(v).tolist() for k, v in extras.items()}


@eqx.filter_jit
def _draw_starts(sampler, target, key, n: int):
    return sampler.initial_positions(key, target, n).astype(jnp.result_type(float))


def _run_fixed_cost(key, sampler, target, budget, num_chains, x0, policy) -> BudgetRun:
    cost = sampler.transition_evals()
    init = sampler.init_evals().energy + sampler.warmup_overhead_evals()
    transitions = (budget // num_chains - init) // cost
    warm = max(policy.min_warmup, int(policy.warmup_fraction * transitions))
    n = transitions - warm
    if n < policy.min_samples:
        raise BudgetTooSmall(
            f"budget {budget:,} gives {transitions} transitions per chain at {cost} "
            f"evaluations each; need {warm} warm-up + {policy.min_samples} samples"
        )
    res = run_mcmc(key, sampler, target, num_chains=num_chains, num_samples=n,
                   num_warmup=warm, initial_position=x0)
    return BudgetRun(res.samples, int(res.num_energy_evals), int(res.num_grad_evals),
                     int(res.num_flow_evals), float(np.mean(np.asarray(res.acceptance_rate))),
                     info={"num_warmup": warm, **_listed(res.extras)})


def _run_variable_cost(key, sampler, target, budget, num_chains, x0, policy) -> BudgetRun:
    """The first sampling chunk always runs and counts, so a budget mostly spent in warm-up
    is overshot by one chunk. Two compiled shapes for any budget."""
    per_chain = budget // num_chains
    warm = max(policy.min_warmup,
               int(policy.warmup_fraction * per_chain / policy.transition_cost_guess))
    init = sampler.init_evals().energy + sampler.warmup_overhead_evals()
    if per_chain < init + warm + policy.min_samples:
        raise BudgetTooSmall(f"budget {budget:,} is too small for {warm} warm-up transitions "
                             f"per chain")
    chunk = policy.chunk_size
    k0, key = jax.random.split(key)
    r = run_mcmc(k0, sampler, target, num_chains=num_chains, num_samples=policy.min_samples,
                 num_warmup=warm, initial_position=x0)
    parts, spent, cost = [r], int(r.num_energy_evals), None
    while cost is None or spent + cost <= budget:  # every chunk run is counted
        r = run_mcmc(jax.random.fold_in(key, len(parts)), sampler, target,
                     num_chains=num_chains, num_samples=chunk, num_warmup=0,
                     initial_state=parts[-1].final_state)
        parts.append(r)
        spent += int(r.num_energy_evals)
        cost = int(r.num_energy_evals)
    sampling = parts[1:]
    acc = float(np.mean([np.mean(np.asarray(p.acceptance_rate)) for p in sampling]))
    per_transition = sum(p.num_energy_evals for p in sampling) / (
        num_chains * chunk * len(sampling))
    return BudgetRun(jnp.concatenate([p.samples for p in parts], axis=1), spent,
                     sum(int(p.num_grad_evals) for p in parts),
                     sum(int(p.num_flow_evals) for p in parts), acc,
                     info={"num_warmup": warm, "mean_evals_per_transition": per_transition,
                           **_listed(parts[-1].extras)})


def _run_particles(key, sampler, target, budget, policy) -> BudgetRun:
    """Independent runs one after another (one compiled shape), while the budget pays for
    another at the last run's measured cost (the first run always counts)."""
    runs, spent, cost = [], 0, None
    while cost is None or spent + cost <= budget:
        r = run_mcmc(jax.random.fold_in(key, len(runs)), sampler, target, num_chains=1,
                     num_samples=policy.num_particles)
        runs.append(r)
        cost = int(r.num_energy_evals)
        spent += cost
    if len(runs) < policy.min_runs:
        raise BudgetTooSmall(
            f"budget {budget:,} pays for {len(runs)} run(s) of {policy.num_particles} "
            f"particles ({cost:,} evaluations per run); need {policy.min_runs}")
    info = {"num_runs": len(runs), "num_particles_per_run": policy.num_particles}
    for k in runs[0].extras:
        info[k] = np.concatenate([np.asarray(r.extras[k]) for r in runs]).tolist()
    return BudgetRun(jnp.concatenate([r.samples for r in runs], axis=0), spent,
                     sum(int(r.num_grad_evals) for r in runs),
                     sum(int(r.num_flow_evals) for r in runs),
                     float(np.mean([float(np.asarray(r.acceptance_rate)[0]) for r in runs])),
                     independent_runs=True, info=info)


def _run_weighted(key, sampler, target, budget) -> BudgetRun:
    ws = sampler.sample(key, target, budget)
    return BudgetRun(ws.positions, ws.num_energy_evals, 0, ws.num_flow_evals,
                     log_w=ws.log_w, strata=ws.strata, pool_counts=ws.pool_counts,
                     info=dict(ws.info or {}))


def _check_sampler(sampler, name="sampler") -> None:
    if not isinstance(sampler, (AbstractSampler, AbstractImportanceSampler)):
        raise TypeError(f"{name} must be an AbstractSampler or an AbstractImportanceSampler, "
                        f"got {type(sampler).__name__}")


def run_with_budget(
    key: Key,
    sampler: AbstractSampler | AbstractImportanceSampler,
    target: AbstractTarget,
    energy_budget: int,
    *,
    num_chains: int = 8,
    initial_position: Array | None = None,
    policy: BudgetPolicy | None = None,
) -> BudgetRun:
    """Run ``sampler`` on ``target`` with a budget of ``energy_budget`` energy evaluations.

    The spending rule is the sampler's (see the module docstring). Chain samplers start at
    ``initial_position`` (one event, or one per chain; default the sampler's own
    ``initial_positions``), except proposal samplers, which start from proposal draws.
    Raises :class:`BudgetTooSmall` when the budget cannot pay for warm-up and a few samples
    (or two particle runs, or enough weighted draws per stratum).
    """
    _check_sampler(sampler)
    if not isinstance(energy_budget, (int, np.integer)) or energy_budget < 1:
        raise ValueError(f"energy_budget must be an integer >= 1, got {energy_budget!r}")
    if not isinstance(num_chains, (int, np.integer)) or num_chains < 1:
        raise ValueError(f"num_chains must be an integer >= 1, got {num_chains!r}")
    budget, policy = int(energy_budget), policy or BudgetPolicy()
    if isinstance(sampler, AbstractImportanceSampler):
        return _run_weighted(key, sampler, target, budget)
    if isinstance(sampler, AbstractParticleSampler):
        return _run_particles(key, sampler, target, budget, policy)
    x0 = None
    if isinstance(sampler, AbstractProposalSampler):
        k0, key = jax.random.split(key)
        x0 = _draw_starts(sampler, target, k0, num_chains)
    elif initial_position is not None:
        x0 = jnp.asarray(initial_position)
        event = tuple(target.event_shape)
        if x0.shape == event:
            x0 = jnp.broadcast_to(x0, (num_chains,) + event)
    if sampler.transition_evals() is None:
        return _run_variable_cost(key, sampler, target, budget, num_chains, x0, policy)
    return _run_fixed_cost(key, sampler, target, budget, num_chains, x0, policy)


def _timed(fn: Callable[[], BudgetRun], time_it: bool) -> tuple[BudgetRun, float]:
    """Run ``fn`` (compiling), then again with warm caches; time the second run."""
    if time_it:
        out = fn()
        jax.block_until_ready(out.samples)
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out.samples)
    if out.log_w is not None:
        jax.block_until_ready(out.log_w)
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


def _stratified(run: BudgetRun, observable) -> dict:
    if len(run.pool_counts) < 3:
        raise ValueError("ΔF_{B−A} needs a stratified sampler over two states (in_A, in_B), "
                         f"got {len(run.pool_counts) - 1} state(s)")
    o = np.asarray(observable(run.samples), dtype=np.float64)
    s = rw.stratified_estimate(run.log_w, run.strata, run.pool_counts, o)
    n = int(run.num_energy_evals)
    ess = min(float(n), s.f_var / s.mean_var) if s.mean_var > 0 else None
    value, stderr = s.free_energy_difference(0, 1)
    counts = np.asarray(run.pool_counts, dtype=np.float64)
    lab, log_w = np.asarray(run.strata), np.asarray(run.log_w)
    khats = [_to_float(rw.pareto_khat(jnp.asarray(log_w[lab == k])))
             if np.sum(lab == k) >= 25 else None for k in range(len(counts))]
    known = [k for k in khats if k is not None]
    return {"estimate": s.mean, "error": math.sqrt(max(s.mean_var, 0.0)), "ess": ess,
            "num_samples": n, "ess_fraction": None if ess is None else ess / n,
            "pareto_khat": max(known) if known else None,
            "stratum_ess": s.ess.tolist(), "stratum_khat": khats,
            "delta_F": {"value": value, "stderr": stderr},
            "fraction_of_samples_in_B": float(counts[1] / counts.sum())}


def _importance(run: BudgetRun, observable, states) -> dict:
    log_w = run.log_w
    e = rw.expectation(log_w, jnp.asarray(observable(run.samples), log_w.dtype))
    diag = rw.weight_diagnostics(log_w, warn=False, what="weights")
    out = {"estimate": float(e.value), "error": float(e.stderr), "ess": diag.ess,
           "num_samples": diag.num_samples, "ess_fraction": diag.ess_fraction,
           "pareto_khat": _to_float(diag.pareto_khat), "weight_warnings": diag.warnings}
    if states is not None:
        in_a, in_b = states[0](run.samples), states[1](run.samples)
        d = rw.free_energy_difference(log_w, in_a, in_b)
        out["delta_F"] = {"value": float(d.value), "stderr": float(d.stderr)}
        out["fraction_of_samples_in_B"] = float(jnp.mean(in_b))
    return out


def estimate_run(run: BudgetRun, observable: Callable[[Array], Array],
                 states: tuple[Callable, Callable] | None = None) -> dict:
    """Estimate, error, ESS and ``ΔF_{B−A}`` of one :class:`BudgetRun` (no exact values).

    ``observable`` and ``states = (in_A, in_B)`` map ``x (*batch, *event)`` to ``(*batch)``.
    Returns ``estimate, error, ess, num_samples`` and, as they apply, ``ess_fraction``,
    ``pareto_khat`` (weighted draws), ``weight_warnings`` (what
    :func:`~physgen.reweighting.weight_diagnostics` found), ``rhat`` (chains: BlackJAX's
    rank-normalised split R̂ of the observable), ``delta_F`` (``value,
    stderr``), ``chains_visiting_B``, ``num_chains`` and ``fraction_of_samples_in_B``.
    Stratified draws take ``ΔF`` between their first two strata and add ``stratum_ess``
    (Kish, per stratum) and ``stratum_khat`` (``None`` below 25 draws).
    """
    if run.strata is not None:
        return _stratified(run, observable)
    if run.log_w is not None:
        return _importance(run, observable, states)
    o = np.asarray(observable(run.samples), dtype=np.float64)  # (R, S)
    n = o.size
    if run.independent_runs:
        m = o.mean(axis=1)
        est, se = float(m.mean()), float(np.std(m, ddof=1) / math.sqrt(m.size))
        ess = min(float(n), float(o.var()) / se**2) if se > 0 else None
        r_hat = None
    else:
        est, se = float(o.mean()), mcse(o)
        # bulk ESS and R-hat are undefined (BlackJAX returns 0 or nan) for a constant observable
        varies = o.max() > o.min()
        ess = _to_float(ess_bulk(jnp.asarray(o))) if varies else None
        r_hat = _to_float(rhat(jnp.asarray(o))) if varies else None
    out = {"estimate": est, "error": se, "ess": ess, "num_samples": int(n)}
    if r_hat is not None:
        out["rhat"] = r_hat
    if states is not None:
        a = np.asarray(states[0](run.samples), dtype=np.float64)
        b = np.asarray(states[1](run.samples), dtype=np.float64)
        value, dse = _delta_f_from_chains(a, b, run.independent_runs)
        out["delta_F"] = {"value": value, "stderr": dse}
        out["chains_visiting_B"] = int(np.sum(np.any(b > 0, axis=1)))
        out["num_chains"] = int(b.shape[0])
    return out


def _estimate_quietly(run, observable, states) -> tuple[dict, bool]:
    """Estimates, and whether a chain was too short for its autocorrelation."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = estimate_run(run, observable, states)
    return est, any(issubclass(w.category, ShortChainWarning) for w in caught)


def _z(value, stderr, exact):
    if exact is None or value is None or stderr is None:
        return None
    if not (math.isfinite(value) and math.isfinite(stderr) and stderr > 0):
        return None
    return (value - exact) / stderr


# ----------------------------------------------------------------------------- public API
def _check_states(states, required: bool) -> None:
    if states is None and not required:
        return
    if not (isinstance(states, (tuple, list)) and len(states) == 2
            and all(callable(s) for s in states)):
        raise ValueError(f"states must be a pair of indicator functions (in_A, in_B), got "
                         f"{states!r}")


def _named(samplers) -> list[tuple[str, Any]]:
    pairs = list(samplers.items()) if isinstance(samplers, Mapping) else list(samplers)
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise TypeError("samplers must be a mapping or a sequence of (name, sampler) "
                            f"pairs, got the entry {pair!r}")
        _check_sampler(pair[1], f"sampler {pair[0]!r}")
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"sampler names must be unique, got {names}")
    return pairs


def _train_cost(sampler, evals: int, seconds: float | None) -> tuple[int, float | None]:
    if isinstance(sampler, AbstractProposalSampler):
        return int(evals), seconds
    return 0, None


def compare_samplers(
    key: Key,
    target: AbstractTarget,
    samplers: Mapping[str, Any] | Sequence[tuple[str, Any]],
    *,
    energy_budget: int,
    num_chains: int = 8,
    observable: Callable[[Array], Array] | None = None,
    states: tuple[Callable, Callable] | None = None,
    exact: Mapping[str, float] | None = None,
    initial_position: Array | None = None,
    flow_train_evals: int = 0,
    flow_train_time: float | None = None,
    policy: BudgetPolicy | None = None,
    log: Callable[[str], Any] | None = print,
) -> list[dict]:
    """Run every sampler on ``target`` with the same sampling budget of energy evaluations.

    Args:
        key: PRNG key (the ``i``-th sampler gets ``fold_in(key, i)``).
        target: a physgen target.
        samplers: ``{name: sampler}`` (or ``(name, sampler)`` pairs), each an
            :class:`AbstractSampler` or an :class:`AbstractImportanceSampler`.
        energy_budget: target energy evaluations per sampler (warm-up included; training
            a proposal comes on top and is reported separately).
        num_chains: chains of each chain sampler.
        observable: ``x (*batch, *event) -> (*batch,)`` scalar observable (jnp); default the
            indicator of state B.
        states: ``(in_A, in_B)``, boolean functions of the same form, for ``ΔF_{B−A}``.
        exact: optional exact values ``{"observable": ..., "delta_F": ...}``.
        initial_position: start of the chains (one event, or one per chain); default the
            sampler's own; proposal samplers start from their proposal.
        flow_train_evals, flow_train_time: what training the proposal of the proposal
            samplers cost.
        policy: :class:`BudgetPolicy`.
        log: progress printer (``None`` for silence).

    Returns:
        one dict per sampler: the columns of :func:`physgen.diagnostics.comparison_table`
        (``method`` is the name) plus ``train_energy_evals``, ``total_energy_evals``,
        ``ess_per_1k_total_evals``, ``train_time_s``, ``delta_F`` (``value, stderr, exact,
        z_score``), ``num_grad_evals``, ``num_flow_evals``, ``acceptance_rate``, ``info`` and
        ``note`` (why a sampler was skipped or what it missed).
    """
    pairs = _named(samplers)
    _check_states(states, required=False)
    exact = exact or {}
    if observable is None:
        if states is None:
            raise ValueError("give an observable or states=(in_A, in_B)")
        observable = lambda x: states[1](x).astype(jnp.result_type(float))
    log = log or (lambda *_: None)
    rows = []
    for i, (name, sampler) in enumerate(pairs):
        train, train_time = _train_cost(sampler, flow_train_evals, flow_train_time)
        t0 = time.perf_counter()
        k_i = jax.random.fold_in(key, i)
        try:
            run, wall = _timed(lambda s=sampler, k=k_i: run_with_budget(
                k, s, target, energy_budget, num_chains=num_chains,
                initial_position=initial_position, policy=policy), True)
        except BudgetTooSmall as err:
            log(f"  {name:<34} skipped: {err}")
            rows.append(_empty_row(name, train, str(err)))
            continue
        est, short = _estimate_quietly(run, observable, states)
        base = {
            "method": name, "num_energy_evals": run.num_energy_evals, "wall_time": wall,
            "estimate": est["estimate"], "error": est["error"], "ess": est["ess"],
            "pareto_khat": est.get("pareto_khat"), "num_samples": est["num_samples"],
            "exact": exact.get("observable"),
        }
        row = comparison_table([base])[0]
        total = run.num_energy_evals + train
        row.update(
            train_energy_evals=train,
            total_energy_evals=total,
            ess_per_1k_total_evals=(_to_float(1000.0 * row["ess"] / total)
                                    if row["ess"] is not None else None),
            train_time_s=train_time,
            num_grad_evals=run.num_grad_evals,
            num_flow_evals=run.num_flow_evals,
            acceptance_rate=run.acceptance_rate,
            info=run.info,
            note=_note(est, run, short),
        )
        for k in ("ess_fraction", "rhat", "chains_visiting_B", "num_chains",
                  "fraction_of_samples_in_B", "stratum_ess", "stratum_khat"):
            if k in est:
                row[k] = est[k]
        if "delta_F" in est:
            d = dict(est["delta_F"])
            d["exact"] = exact.get("delta_F")
            d["z_score"] = _z(d["value"], d["stderr"], d["exact"])
            row["delta_F"] = d
        rows.append(row)
        khat = "" if row["pareto_khat"] is None else f" (k̂ {row['pareto_khat']:.2f})"
        log(f"  {name:<34} {row['num_energy_evals']:>10,} evals  ESS {_fmt(row['ess'])}{khat}  "
            f"estimate {_fmt(row['estimate'])} ± {_fmt(row['error'])}  "
            f"ΔF {_fmt(row.get('delta_F', {}).get('value'))} ± "
            f"{_fmt(row.get('delta_F', {}).get('stderr'))}  "
            f"[{time.perf_counter() - t0:.1f} s incl. compile]")
    return rows


def _note(est: dict, run: BudgetRun, short_chains: bool = False) -> str:
    notes = list(_weight_notes(est))
    if short_chains:
        notes.append("chains shorter than 50 τ: error underestimated")
    if est.get("rhat") is not None and est["rhat"] > RHAT_THRESHOLD:
        notes.append(f"R̂ {est['rhat']:.2f} > {RHAT_THRESHOLD:g}: chains not converged")
    unit = "runs" if run.independent_runs else "chains"
    if "chains_visiting_B" in est and est["chains_visiting_B"] == 0:
        notes.append(f"no {unit[:-1]} visited B")
    elif "chains_visiting_B" in est and est["chains_visiting_B"] < est["num_chains"]:
        notes.append(f"{est['chains_visiting_B']} of {est['num_chains']} {unit} visited B")
    for stratum, lack in ((run.info or {}).get("short") or {}).items():
        notes.append(f"pool at max_pool_size: stratum {stratum} short by {lack:,} members")
    plain_is = run.log_w is not None and run.strata is None
    if plain_is and est.get("fraction_of_samples_in_B", 1.0) == 0:
        notes.append("no flow sample in B")
    chains = run.log_w is None and not run.independent_runs
    if chains and est["ess"] is None:
        notes.append("observable constant: ESS undefined")
    return "; ".join(notes)


def _weight_notes(est: dict):
    """Short notes for the failed weight checks (the thresholds named)."""
    for w in est.get("weight_warnings", ()):
        if "needs N" in w:
            yield "k̂ not estimable (N < 25)"
        elif "k-hat" in w:
            yield f"k̂ {est['pareto_khat']:.2f} > {rw.KHAT_THRESHOLD:g}: weights unreliable"
        elif "ESS/N" in w:
            yield f"ESS/N {est['ess_fraction']:.3f} < {rw.MIN_ESS_FRACTION:g}: proposal poor"
        elif "ESS =" in w:
            yield f"ESS {est['ess']:.0f} < {rw.MIN_ESS:g}"


def _empty_row(name, train, note) -> dict:
    row = {k: None for k in ("num_samples", "num_energy_evals", "wall_time_s", "ess",
                             "pareto_khat", "ess_per_1k_evals", "ess_per_s", "estimate",
                             "error", "exact", "z_score")}
    row.update(method=name, train_energy_evals=train, total_energy_evals=None,
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


def render_comparison(rows: Sequence[dict], fmt: str = "text") -> str:
    """The comparison table (:func:`physgen.diagnostics.render_table`) followed by a second
    table with the training cost, the total, and ``ΔF_{B−A}`` ± error against exact."""
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
