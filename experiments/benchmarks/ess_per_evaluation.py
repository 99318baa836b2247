"""ESS per energy evaluation: Boltzmann generator vs MCMC baselines on three targets, one run.

For each target (the 2-D double well of Noé et al. 2019, a 2-D mixture of three well separated
Gaussians, and the 8-D many-well of FAB) a small neural spline flow is trained by reverse KL
(data-free), then every method gets the SAME budget of target energy evaluations:
HMC, NUTS and MALA (BlackJAX, adapted), parallel tempering and adaptive tempered SMC (the
barrier-crossing baselines), the flow as an importance sampler ("BG reweighted", Kish ESS)
and as the proposal of an independence Metropolis chain. All MCMC chains start in state A
(the situation of someone who knows one minimum); SMC starts from its broad reference and
the BG methods from the flow.

The observable is the indicator of state B, so each method estimates ``p_B``, and from the
A/B indicators ``ΔF_{B−A} = −log(p_B/p_A)`` (kT), both against exact values (quadrature).
The flow's training evaluations are reported separately and in a total. Optionally
(``--reach``) the number of evaluations each method needs for ``se(ΔF) ≤ 0.05 kT`` within 3
standard errors of exact at two consecutive budgets (:func:`physgen.samplers.evals_to_reach`),
growing the budget by a factor from a start up to a cap, per method (``REACH``;
``--reach-start``/``--reach-factor``/``--reach-cap`` override them for every method).
The flow's training budget is per target (``TRAINING``; ``--steps``/``--batch-size``
override it). On the 2-D double well 200 × 64 samples serve every seed: over seeds 0–7 the
largest k̂ of the stratified BG's weights is 0.60 and every seed reaches; 100 × 64 has a lower
median but k̂ 0.88 and 0.94 in two seeds and a worst seed 1.6× higher.

``--seeds N`` repeats everything for seeds ``--seed`` … ``--seed + N − 1``, each with a
freshly trained flow (its training counted), and summarises the evaluations to reach over
seeds: median, min–max and the seeds that did not reach within the cap (counted as above
the cap in the median), and the ratio of the best crossing MCMC method's median to each
BG method's, with a 95% percentile interval from bootstrap resamples of the seeds (each
method's seeds resampled independently: their runs are independent). ``--merge`` combines
the results.json of separate runs (other methods or seeds) into one summary and figure.

Writes results.json (per target: one comparison table and reach list per seed, the summary
over seeds) and ess_per_1k_evals.{png,pdf} (every seed shown) to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_json  # noqa: E402
from _comparison_figure import comparison_figure  # noqa: E402
from _problems import make_problem, make_samplers  # noqa: E402

import physgen  # noqa: E402
from physgen import samplers as smp  # noqa: E402
from physgen.flows import neural_spline_flow  # noqa: E402
from physgen.objectives import ReverseKL  # noqa: E402

TARGETS = ("double_well", "gmm", "many_well")
MCMC_METHODS = ("HMC", "NUTS", "MALA", "PT", "SMC")
BG_METHODS = ("BG reweighted", "BG stratified", "BG as IMH proposal")
DEFAULT_METHODS = MCMC_METHODS + BG_METHODS
# (steps, batch size) of reverse-KL training per target; each evaluates the energy once per
# sample, so training costs steps × batch energy evaluations
TRAINING = {"double_well": (200, 64), "gmm": (1000, 256), "many_well": (1000, 256)}
# with --quick: the many-well's flow needs 600 steps for calibrated weights (at 60 its ESS/N
# was 0.03 and the spread of p_B over seeds 2.6 times the reported error)
QUICK_TRAINING = {"double_well": (60, 64), "gmm": (60, 64), "many_well": (600, 64)}
# (first budget, growth factor, cap) of the evaluations-to-reach search per method: the
# chains that stay in A are stopped at a cap, PT starts near where it crosses, the BG low
REACH = {
    "HMC": (62_500, 2.0, 4_000_000), "NUTS": (62_500, 2.0, 4_000_000),
    "MALA": (62_500, 2.0, 4_000_000), "SMC": (62_500, 2.0, 4_000_000),
    "PT": (500_000, 1.2, 6_000_000),
    "BG reweighted": (2_000, 1.2, 2_000_000), "BG stratified": (500, 1.2, 2_000_000),
    "BG as IMH proposal": (2_000, 1.2, 2_000_000),
}
BOOTSTRAP_RESAMPLES = 2000


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("results/benchmarks/ess_per_evaluation"),
                   help="output folder")
    p.add_argument("--quick", action="store_true",
                   help="small run for tests (a minute; training per target: QUICK_TRAINING)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1,
                   help="independent seeds (a flow trained per seed), summarised over seeds")
    p.add_argument("--merge", type=Path, nargs="+", default=None, metavar="RESULTS",
                   help="combine these results.json (other methods or seeds) into --out, "
                        "running nothing")
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    p.add_argument("--methods", nargs="+", choices=DEFAULT_METHODS, default=list(DEFAULT_METHODS))
    p.add_argument("--budget", type=int, default=100_000,
                   help="energy evaluations per method for sampling (BG training extra)")
    p.add_argument("--chains", type=int, default=8, help="MCMC chains / SMC runs")
    p.add_argument("--steps", type=int, default=None,
                   help="flow training steps (reverse KL); default per target (TRAINING)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples per training step; default per target (TRAINING)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--layers", type=int, default=4, help="spline coupling layers")
    p.add_argument("--width", type=int, default=32, help="conditioner width")
    p.add_argument("--max-pool-size", type=int, default=1 << 26,
                   help="BG stratified: most flow draws its pool may grow to (2^20, its first "
                        "size, keeps the pool fixed)")
    p.add_argument("--reach", choices=["none", "double_well", "all"], default=None,
                   help="targets on which to find the evaluations to reach se(ΔF) <= "
                        "--se-target (default: double_well; none with --quick)")
    p.add_argument("--se-target", type=float, default=0.05, help="target se(ΔF_B−A) in kT")
    p.add_argument("--reach-start", type=int, default=None,
                   help="first budget tried (default per method: REACH)")
    p.add_argument("--reach-cap", type=int, default=None,
                   help="largest budget tried (default per method: REACH)")
    p.add_argument("--reach-factor", type=float, default=None,
                   help="budget growth factor between tries, the resolution of the answer "
                        "(default per method: REACH)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.budget = min(args.budget, 10_000)
        args.chains = min(args.chains, 4)
        args.layers, args.width = min(args.layers, 2), min(args.width, 16)
        args.reach = args.reach or "none"
        args.reach_start = args.reach_start or 1_000
        args.reach_factor = args.reach_factor or 2.0
    args.reach = args.reach or "double_well"
    return args


# ----------------------------------------------------------------------------- flow
def train_flow(key, target, base, args, steps: int, batch_size: int):
    dim = target.event_shape[0]
    k_init, k_fit = jax.random.split(key)
    flow = neural_spline_flow(k_init, dim, num_layers=args.layers, width=args.width,
                              num_bins=16, interval=6.0, base=base)
    optimizer = optax.adam(optax.cosine_decay_schedule(args.lr, steps, alpha=0.01))
    objective = ReverseKL(target, batch_size, forward_weight=1.0)
    t0 = time.perf_counter()
    flow, history, _ = physgen.fit(k_fit, flow, objective, steps=steps, optimizer=optimizer,
                                   batch_size=batch_size, progress=not args.no_progress,
                                   chunk_size=min(100, steps))
    train_time = time.perf_counter() - t0
    loss = history["loss"]
    return flow, {
        "steps": steps,
        "batch_size": batch_size,
        "layers": args.layers,
        "width": args.width,
        "objective": "ReverseKL(forward_weight=1.0)",
        "num_energy_evals": steps * batch_size,
        "train_time_s_incl_compile": train_time,
        "final_loss_mean_last_10pct": float(np.mean(loss[-max(1, len(loss) // 10):])),
        "minus_log_Z": -float(target.log_Z()),
    }


# ----------------------------------------------------------------------------- main
NOTES = [
    "num_energy_evals: target energy evaluations spent sampling (warm-up included; a "
    "gradient evaluation counts as one); the BG's training evaluations are in "
    "train_energy_evals and total_energy_evals.",
    "ESS: bulk ESS (BlackJAX) of the B indicator for MCMC; Kish ESS for BG reweighted, with "
    "the Pareto k-hat of the log-weights beside it (pareto_khat; BG stratified: the largest "
    "over strata, stratum_ess and stratum_khat per stratum; a note when k-hat > 0.7 or "
    "ESS/N < 0.1); between-run variance for SMC. ESS is undefined (null) when a chain "
    "never leaves A.",
    "wall_time_s excludes compilation (second run with warm caches); the machine may be "
    "shared, so timings are noisy.",
    "estimate ± error is p_B; delta_F is ΔF_B−A = −log(p_B/p_A) in kT with a delta-method "
    "error (Geyer's MCSE of 1_B/p_B − 1_A/p_A for MCMC, weights for the BG); MCMC rows note "
    "chains shorter than 50 tau and R-hat > 1.01.",
    "evals_to_reach: se(ΔF) <= se_target within 3 se of exact at two consecutive budgets; "
    "per seed a fresh flow, its training included in the total. reach_over_seeds: median "
    "(a seed not reached counts as above the cap), min–max of the reached seeds; "
    "reach_ratio: the best crossing MCMC method's median over each BG method's, 95% "
    f"percentile interval from {BOOTSTRAP_RESAMPLES} bootstrap resamples of the seeds "
    "(each method resampled independently), and the per-seed ratios (same seed index).",
]


def reach_settings(method: str, args) -> tuple[int, float, int]:
    """``(start, factor, cap)`` of the evaluations-to-reach search: ``REACH`` unless given."""
    start, factor, cap = REACH[method]
    return (args.reach_start or start, args.reach_factor or factor, args.reach_cap or cap)


def run_seed(name: str, ti: int, seed: int, args, problem) -> dict:
    """One seed on one target: a fresh flow, the comparison table and, where asked, the
    evaluations to reach for every method."""
    target, states, exact, start, settings, base, _ = problem
    policy = smp.BudgetPolicy(num_particles=16 if args.quick else 64)
    k_flow, k_cmp, k_reach = jax.random.split(jax.random.fold_in(jax.random.key(seed), ti), 3)
    flow, train = None, None
    if any(m in BG_METHODS for m in args.methods):
        training = QUICK_TRAINING if args.quick else TRAINING
        steps = args.steps or training[name][0]
        batch_size = args.batch_size or training[name][1]
        print(f"[{name} seed {seed}] training the flow: {steps} steps × {batch_size} samples "
              f"(reverse KL)", flush=True)
        flow, train = train_flow(k_flow, target, base, args, steps, batch_size)
        print(f"[{name} seed {seed}]   loss {train['final_loss_mean_last_10pct']:.3f} "
              f"(minimum −log Z = {train['minus_log_Z']:.3f}), "
              f"{train['train_time_s_incl_compile']:.1f} s", flush=True)
    train_evals = train["num_energy_evals"] if train else 0
    print(f"[{name} seed {seed}] comparing {len(args.methods)} methods at {args.budget:,} "
          f"energy evaluations each", flush=True)
    samplers = make_samplers(settings, args.methods, flow, states, args.quick,
                             args.max_pool_size)
    rows = smp.compare_samplers(
        k_cmp, target, dict(samplers.values()), energy_budget=args.budget,
        num_chains=args.chains, flow_train_evals=train_evals,
        flow_train_time=train["train_time_s_incl_compile"] if train else None,
        states=states, exact={"observable": exact["p_B"], "delta_F": exact["delta_F_B_minus_A"]},
        initial_position=start, policy=policy,
    )
    for row, m in zip(rows, samplers, strict=True):
        row["key"] = m
    table = smp.render_comparison(rows, fmt="text")
    print(table, flush=True)
    entry = {"seed": seed, "flow_training": train, "table": rows, "table_text": table}
    if args.reach == "all" or args.reach == name:
        entry["evals_to_reach"] = []
        for m in args.methods:
            first, factor, cap = reach_settings(m, args)
            print(f"[{name} seed {seed}] {m}: evaluations to reach se(ΔF) <= {args.se_target} "
                  f"kT within 3 se at two consecutive budgets (×{factor:g} from {first:,} to "
                  f"at most {cap:,})", flush=True)
            # the key depends on the method, not on which others run with it, so that
            # separate runs can be merged
            r = smp.evals_to_reach(
                jax.random.fold_in(k_reach, DEFAULT_METHODS.index(m)), target, samplers[m][1],
                name=m, states=states, exact_delta_F=exact["delta_F_B_minus_A"],
                se_target=args.se_target, start_budget=first, cap=cap,
                num_chains=args.chains, factor=factor, flow_train_evals=train_evals,
                initial_position=start, policy=policy,
            )
            r.update(label=samplers[m][0], factor=factor, start_budget=first)
            entry["evals_to_reach"].append(r)
            what = (f"{r['total_energy_evals']:,} (sampling {r['sampling_energy_evals']:,}"
                    f" + training {r['train_energy_evals']:,})" if r["reached"]
                    else f"not reached within cap {r['cap']:,}")
            print(f"    {m:<20} {what}", flush=True)
    return entry


def summarise(per_seed: list[dict], key=None) -> dict:
    """The evaluations to reach over seeds (:func:`physgen.samplers.reach_over_seeds`: the
    BG methods against the best crossing MCMC method) and each seed's ESS and k̂ of the BG
    weights (see NOTES)."""
    out = smp.reach_over_seeds(per_seed, methods=DEFAULT_METHODS, proposals=BG_METHODS,
                               key=key, n_boot=BOOTSTRAP_RESAMPLES)
    weights = {}
    for e in per_seed:
        for row in e["table"]:
            if row["key"] in BG_METHODS:
                weights.setdefault(row["key"], []).append({
                    "seed": e["seed"], "ess": row["ess"], "ess_per_1k_evals":
                    row["ess_per_1k_evals"], "pareto_khat": row["pareto_khat"],
                    "stratum_ess": row.get("stratum_ess"), "stratum_khat": row.get("stratum_khat"),
                    "delta_F_z": (row.get("delta_F") or {}).get("z_score")})
    return {**out, "bg_weights_per_seed": weights}


def main(argv=None):
    args = parse_args(argv)
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {args.seeds}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        return merge(args.merge, args.out)
    t_start = time.perf_counter()
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(), "notes": NOTES, "targets": {},
    }
    seeds = list(range(args.seed, args.seed + args.seeds))
    for ti, name in enumerate(args.targets):
        print(f"[{name}] setting up", flush=True)
        problem = make_problem(name)
        target, states, exact, start, settings, base, desc = problem
        policy = smp.BudgetPolicy(num_particles=16 if args.quick else 64)
        entry = {"description": desc, "exact": exact,
                 "settings": {**settings, **dataclasses.asdict(policy)}, "per_seed": []}
        results["targets"][name] = entry
        for seed in seeds:
            entry["per_seed"].append(run_seed(name, ti, seed, args, problem))
            _finish(entry)
            write_json(args.out / "results.json", results)  # partial results survive a crash
    results["total_time_s"] = time.perf_counter() - t_start
    write_json(args.out / "results.json", results)
    make_figure(args.out, results)
    print(f"total {results['total_time_s']:.1f} s; results in {args.out / 'results.json'}")
    return results


def _finish(entry: dict) -> None:
    """The first seed's table and reach list at the top (one seed: as they were), and the
    summary over seeds."""
    first = entry["per_seed"][0]
    entry["flow_training"], entry["table"] = first["flow_training"], first["table"]
    entry["table_text"] = first["table_text"]
    if "evals_to_reach" in first:
        entry["evals_to_reach"] = first["evals_to_reach"]
        entry.update(summarise(entry["per_seed"]))
        print(smp.render_reach(entry), flush=True)


def merge(paths: list[Path], out: Path) -> dict:
    """One results.json from several runs: per target, each seed's table rows and reach
    entries joined (a method run twice for a seed: the later file wins), then summarised."""
    import json

    runs = [json.loads(Path(p).read_text()) for p in paths]
    results = {"config": {**runs[0]["config"], "merged_from": [str(p) for p in paths]},
               "configs": [r["config"] for r in runs], "machine": machine(), "notes": NOTES,
               "targets": {}}
    for run in runs:
        for name, e in run["targets"].items():
            entry = results["targets"].setdefault(name, {
                "description": e["description"], "exact": e["exact"], "settings": e["settings"],
                "per_seed": []})
            for s in e["per_seed"]:
                mine = next((x for x in entry["per_seed"] if x["seed"] == s["seed"]), None)
                if mine is None:
                    entry["per_seed"].append(s)
                    continue
                keys = {r["key"] for r in s["table"]}
                mine["table"] = [r for r in mine["table"] if r["key"] not in keys] + s["table"]
                reach = {r["method"] for r in s.get("evals_to_reach", [])}
                mine["evals_to_reach"] = [r for r in mine.get("evals_to_reach", [])
                                          if r["method"] not in reach] + s.get("evals_to_reach",
                                                                               [])
                mine["flow_training"] = mine["flow_training"] or s["flow_training"]
    for entry in results["targets"].values():
        entry["per_seed"].sort(key=lambda s: s["seed"])
        for s in entry["per_seed"]:
            order = {m: i for i, m in enumerate(DEFAULT_METHODS)}
            s["table"].sort(key=lambda r: order[r["key"]])
            s["table_text"] = smp.render_comparison(s["table"], fmt="text")
            s.get("evals_to_reach", []).sort(key=lambda r: order[r["method"]])
        _finish(entry)
    write_json(out / "results.json", results)
    make_figure(out, results)
    return results


def make_figure(out: Path, results: dict) -> None:
    """ESS per 1000 evaluations per target and, where searched, the evaluations to reach:
    every seed shown (:func:`comparison_figure`)."""
    tables = {n: [s["table"] for s in e["per_seed"]] for n, e in results["targets"].items()}
    reach = {n: [{**r, "method": r["label"]} for r in e.get("reach_over_seeds", [])]
             for n, e in results["targets"].items()}
    comparison_figure(out / "ess_per_1k_evals", tables, reach)


if __name__ == "__main__":
    main()
