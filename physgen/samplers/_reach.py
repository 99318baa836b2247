"""How many energy evaluations a sampler needs: the search of one seed,
:func:`evals_to_reach`, and its summary over seeds, :func:`reach_over_seeds`.

Over seeds, the evaluations to reach are summarised per method by the median, with a seed
that did not reach within its cap counted as above the cap (``inf``), and the min–max of
the seeds that reached. Each learned sampler (a *proposal*, such as a Boltzmann generator)
is compared with the baseline method of the smallest finite median by the ratio of
medians, with a 95% percentile interval from bootstrap resamples of the seeds, each
method's seeds resampled independently (their runs are independent), and the range of the
per-seed ratios (same seed index).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import reweighting as rw
from .._base import Array, Key
from ..targets._base import AbstractTarget
from ._base import AbstractImportanceSampler, AbstractSampler, BudgetTooSmall
from ._compare import (
    BudgetPolicy,
    _check_sampler,
    _check_states,
    _estimate_quietly,
    _fmt,
    _to_float,
    _train_cost,
    _z,
    run_with_budget,
)


def _grow(budget: int, factor: float) -> int:
    return max(budget + 1, int(round(budget * factor)))


def evals_to_reach(
    key: Key,
    target: AbstractTarget,
    sampler: AbstractSampler | AbstractImportanceSampler,
    *,
    states: tuple[Callable, Callable],
    exact_delta_F: float,
    name: str | None = None,
    se_target: float = 0.05,
    max_abs_z: float = 3.0,
    start_budget: int = 4_000,
    cap: int = 2_000_000,
    factor: float = 2.0,
    consecutive: int = 2,
    num_chains: int = 8,
    flow_train_evals: int = 0,
    initial_position: Array | None = None,
    policy: BudgetPolicy | None = None,
    log: Callable[[str], Any] | None = print,
) -> dict:
    """Energy evaluations ``sampler`` needs for ``se(ΔF_{B−A}) ≤ se_target`` (kT) with
    ``|ΔF̂ − ΔF_exact| ≤ max_abs_z · se``.

    The sampling budget grows by ``factor`` (default: doubles) from ``start_budget``. The
    stopping rule, so that one lucky budget cannot satisfy it: the criterion must hold at
    ``consecutive`` (default 2) consecutive budgets, each a fresh run (key ``fold_in(key,
    budget)``); the answer is the evaluations of the last of them, where the search stops.
    A budget whose chains are shorter than their autocorrelation window (the MCSE is then
    underestimated) does not meet the criterion. When the next budget would exceed ``cap``
    before the rule holds, ``reached = False`` ("not reached within cap"). The answer is
    for one seed, with resolution a factor ``factor``; repeat over seeds for its spread. A
    proposal sampler's training evaluations ``flow_train_evals`` are added to
    ``total_energy_evals``.

    Returns ``{method, reached, sampling_energy_evals, train_energy_evals,
    total_energy_evals, cap, se_target, max_abs_z, consecutive, history}`` (``method``:
    ``name``, default the sampler's class name) with one history entry per budget tried
    (``budget, energy_evals, delta_F, stderr, z_score, meets_criterion``, and for
    stratified draws ``pool``, ``weighted_counts`` and ``short``).
    """
    if not factor > 1:
        raise ValueError(f"evals_to_reach needs factor > 1, got {factor}")
    if not isinstance(consecutive, (int, np.integer)) or consecutive < 1:
        raise ValueError(f"consecutive must be an integer >= 1, got {consecutive!r}")
    _check_sampler(sampler)
    _check_states(states, required=True)
    method = name or type(sampler).__name__
    log = log or (lambda *_: None)
    train, _ = _train_cost(sampler, flow_train_evals, None)
    history = []
    budget = int(start_budget)
    reached, streak = None, 0
    while budget <= cap:
        try:
            run = run_with_budget(jax.random.fold_in(key, budget), sampler, target, budget,
                                  num_chains=num_chains, initial_position=initial_position,
                                  policy=policy)
        except BudgetTooSmall:
            budget, streak = _grow(budget, factor), 0
            continue
        est, short = _estimate_quietly(run, states[1], states)
        d = est["delta_F"]
        z = _z(d["value"], d["stderr"], exact_delta_F)
        ok = (math.isfinite(d["stderr"]) and d["stderr"] <= se_target and z is not None
              and abs(z) <= max_abs_z and not short)
        streak = streak + 1 if ok else 0
        entry = {"budget": budget, "energy_evals": run.num_energy_evals,
                 "delta_F": _to_float(d["value"]), "stderr": _to_float(d["stderr"]),
                 "z_score": z, "meets_criterion": bool(ok),
                 "error_underestimated_short_chains": short}
        info = run.info or {}
        entry.update({k: info[k] for k in ("pool", "weighted_counts", "short") if k in info})
        history.append(entry)
        log(f"    {method:<20} budget {budget:>10,}: ΔF {_fmt(d['value'])} ± "
            f"{_fmt(d['stderr'])} (z {_fmt(z, 3)}){f'  criterion met ({streak})' if ok else ''}")
        if streak >= consecutive:
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
        "consecutive": int(consecutive),
        "history": history,
    }


def _median_above_cap(totals: Sequence[float | None]) -> float:
    return float(np.median([math.inf if t is None else t for t in totals]))


def _boot_medians(key: Key, totals: Sequence[float | None], n_boot: int) -> np.ndarray:
    x = jnp.asarray([math.inf if t is None else float(t) for t in totals])
    return np.asarray(rw.bootstrap(key, jnp.median, x, n_boot=n_boot))


def reach_over_seeds(
    per_seed: Sequence[Mapping],
    *,
    methods: Sequence[str],
    proposals: Collection[str],
    key: Key | None = None,
    n_boot: int = 2000,
) -> dict:
    """The evaluations to reach of several seeds, summarised per method (module docstring).

    ``per_seed``: ``[{"seed": s, "evals_to_reach": [evals_to_reach(...) results]}, ...]``,
    one entry per seed; ``methods``: every method's name, in the order of the output; the
    index of a method in it picks its bootstrap key (``fold_in(key, index)``), so a summary
    of merged runs keeps each interval. ``proposals``: the methods compared with the best
    baseline (every other method is a baseline).

    Returns ``{"reach_over_seeds": [per method: seeds, totals (None: not reached),
    sampling, train, reached, not_reached, median (None when it is above the cap), min,
    max, cap, se_target, and the search's label/factor/start_budget when given],
    "reach_ratio": [per proposal with a finite median, largest first: mcmc (the best
    baseline), bg (the proposal), median_ratio, interval_95, per_seed_min, per_seed_max,
    mcmc_seeds, bg_seeds], "best_reach_ratio": the first of them or None}``.
    """
    key = jax.random.key(0) if key is None else key
    runs: dict[str, list[tuple[int, Mapping]]] = {}
    for e in per_seed:
        for r in e.get("evals_to_reach", []):
            runs.setdefault(r["method"], []).append((e["seed"], r))
    unknown = sorted(set(runs) - set(methods))
    if unknown:
        raise ValueError(f"reach_over_seeds: methods {unknown} are not in methods={list(methods)}")
    reach = []
    for m in [m for m in methods if m in runs]:
        seeds = [s for s, _ in runs[m]]
        rows = [r for _, r in runs[m]]
        totals = [r["total_energy_evals"] if r["reached"] else None for r in rows]
        got = [t for t in totals if t is not None]
        med = _median_above_cap(totals)
        reach.append({
            "method": m, "label": rows[0].get("label", m), "seeds": seeds, "totals": totals,
            "sampling": [r["sampling_energy_evals"] for r in rows],
            "train": [r["train_energy_evals"] for r in rows],
            "reached": len(got), "not_reached": len(totals) - len(got),
            "median": med if math.isfinite(med) else None,
            "min": min(got) if got else None, "max": max(got) if got else None,
            "cap": max(r["cap"] for r in rows), "se_target": rows[0]["se_target"],
            "factor": rows[0].get("factor"), "start_budget": rows[0].get("start_budget"),
        })
    baselines = [r for r in reach if r["method"] not in proposals and r["median"]]
    best = min(baselines, key=lambda r: r["median"]) if baselines else None
    ratios = []
    for r in reach:
        if best is None or r["method"] not in proposals or not r["median"]:
            continue
        k_a, k_b = jax.random.split(jax.random.fold_in(key, list(methods).index(r["method"])))
        boot = (_boot_medians(k_a, best["totals"], n_boot)
                / _boot_medians(k_b, r["totals"], n_boot))
        # no interpolation: a resample whose median is above the cap gives an infinite ratio
        lo, hi = np.percentile(boot, [2.5, 97.5], method="inverted_cdf")
        by_seed = dict(zip(best["seeds"], best["totals"], strict=True))
        paired = [by_seed[s] / t for s, t in zip(r["seeds"], r["totals"], strict=True)
                  if t is not None and by_seed.get(s) is not None]
        ratios.append({
            "mcmc": best["method"], "bg": r["method"], "median_ratio": best["median"] / r["median"],
            "interval_95": [float(lo), float(hi)],
            "interval": f"95% percentile, {n_boot} bootstrap resamples of the seeds of each "
                        "method (independently)",
            "per_seed_min": min(paired) if paired else None,
            "per_seed_max": max(paired) if paired else None,
            "mcmc_seeds": len(best["totals"]), "bg_seeds": len(r["totals"]),
        })
    ratios.sort(key=lambda x: -x["median_ratio"])
    return {"reach_over_seeds": reach, "reach_ratio": ratios,
            "best_reach_ratio": ratios[0] if ratios else None}


def render_reach(summary: Mapping) -> str:
    """The text of a :func:`reach_over_seeds` summary: one line per method and per ratio."""
    def times(v):
        return "—" if v is None else f"{v:.0f}×"

    lines = ["evaluations to reach, training included, over seeds:"]
    for r in summary["reach_over_seeds"]:
        med = f"{r['median']:,.0f}" if r["median"] else f"> {r['cap']:,}"
        span = f"{r['min']:,}–{r['max']:,}" if r["min"] else "—"
        lines.append(f"  {r['method']:<20} median {med:>12}  min–max {span:>22}  "
                     f"not reached {r['not_reached']}/{len(r['totals'])} (cap {r['cap']:,})")
    for x in summary["reach_ratio"]:
        lo, hi = x["interval_95"]
        lines.append(f"  {x['mcmc']} / {x['bg']}: {x['median_ratio']:.0f}× (95% {lo:.0f}–"
                     f"{hi:.0f}; per seed {times(x['per_seed_min'])}–"
                     f"{times(x['per_seed_max'])})")
    return "\n".join(lines)
