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
standard errors of exact, growing the budget by ``--reach-factor`` up to ``--reach-cap``.
The flow's training budget is per target (``TRAINING``; ``--steps``/``--batch-size``
override it): the 2-D double well needs only 100 × 64 samples, which keeps the BG's total
(training + sampling) small.

Writes results.json (one comparison table per target) and ess_per_1k_evals.{png,pdf} to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import machine, write_json  # noqa: E402

import physgen  # noqa: E402
from physgen import samplers as smp  # noqa: E402
from physgen.distributions import DiagNormal  # noqa: E402
from physgen.flows import neural_spline_flow  # noqa: E402
from physgen.objectives import ReverseKL  # noqa: E402
from physgen.targets import DoubleWell, GaussianMixture, ManyWell  # noqa: E402

TARGETS = ("double_well", "gmm", "many_well")
MCMC_METHODS = ("HMC", "NUTS", "MALA", "PT", "SMC")
BG_METHODS = ("BG reweighted", "BG stratified", "BG as IMH proposal")
DEFAULT_METHODS = MCMC_METHODS + BG_METHODS
# (steps, batch size) of reverse-KL training per target; each evaluates the energy once per
# sample, so training costs steps × batch energy evaluations
TRAINING = {"double_well": (100, 64), "gmm": (1000, 256), "many_well": (1000, 256)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("results/benchmarks/ess_per_evaluation"),
                   help="output folder")
    p.add_argument("--quick", action="store_true",
                   help="small run for tests (a minute; the flow trains 600 steps, enough "
                        "for calibrated importance-sampling errors on the many-well)")
    p.add_argument("--seed", type=int, default=0)
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
    p.add_argument("--reach", choices=["none", "double_well", "all"], default=None,
                   help="targets on which to find the evaluations to reach se(ΔF) <= "
                        "--se-target (default: double_well; none with --quick)")
    p.add_argument("--se-target", type=float, default=0.05, help="target se(ΔF_B−A) in kT")
    p.add_argument("--reach-start", type=int, default=1_000, help="first budget tried")
    p.add_argument("--reach-cap", type=int, default=4_096_000, help="largest budget tried")
    p.add_argument("--reach-factor", type=float, default=2.0,
                   help="budget growth factor between tries (the resolution of the answer)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.budget = min(args.budget, 10_000)
        args.chains = min(args.chains, 4)
        args.steps = min(args.steps or 600, 600)
        args.batch_size = min(args.batch_size or 64, 64)
        args.layers, args.width = min(args.layers, 2), min(args.width, 16)
        args.reach = args.reach or "none"
    args.reach = args.reach or "double_well"
    return args


# ----------------------------------------------------------------------------- targets
def _gmm_target():
    """Three Gaussians (σ = 0.5) at mutual distances ≈ 5: barriers of ~12 kT; weights
    0.5 / 0.3 / 0.2. States: A = the region where component 0 is most responsible, B = the
    same for component 1 (the third mode belongs to neither)."""
    means = np.array([[-2.5, -1.0], [2.5, -1.0], [0.0, 3.0]])
    return GaussianMixture(means, 0.5, weights=np.array([0.5, 0.3, 0.2]))


def _gmm_exact(target, states, half_width=8.0, n=1601):
    """``p_A``, ``p_B`` by a 2-D trapezoid-free Riemann sum on a fine grid (the density is
    normalised and negligible at the edges; error far below 1e-6)."""
    g = np.linspace(-half_width, half_width, n)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1))
    dens = np.exp(-np.asarray(jax.vmap(target.energy)(pts), dtype=np.float64))
    cell = (g[1] - g[0]) ** 2
    in_a = np.asarray(states[0](pts))
    in_b = np.asarray(states[1](pts))
    total = dens.sum() * cell
    p_a, p_b = dens[in_a].sum() * cell / total, dens[in_b].sum() * cell / total
    return {"p_A": float(p_a), "p_B": float(p_b), "delta_F_B_minus_A": -math.log(p_b / p_a),
            "quadrature_total_mass": float(total)}


def make_samplers(cfg: dict, methods, flow, states, quick: bool) -> dict:
    """``{method: (label, sampler)}`` for the chosen methods. ``cfg``: ``step_size`` (start of
    the adapted HMC/NUTS/MALA, fixed in the tempered inner HMC), ``pt_replicas``,
    ``pt_beta_min``, ``smc_reference_scale``; HMC takes 10 leapfrog steps, the tempered
    inner HMC 5, SMC 4 moves per tempering step."""
    s, k, b = cfg["step_size"], cfg["pt_replicas"], cfg["pt_beta_min"]
    inner = smp.HMC(s, 5, adapt=False)
    make = {
        "HMC": lambda: ("HMC (L=10, adapted)", smp.HMC(s, 10)),
        "NUTS": lambda: ("NUTS (adapted)", smp.NUTS(s)),
        "MALA": lambda: ("MALA (adapted)", smp.MALA(s)),
        "PT": lambda: (f"PT (HMC, K={k}, β_min={b:g})",
                       smp.ParallelTempering(inner, smp.geometric_ladder(k, b))),
        "SMC": lambda: ("tempered SMC (HMC, 4 moves)", smp.TemperedSMC(
            inner, num_mcmc_steps=4, reference_scale=cfg["smc_reference_scale"])),
        "BG reweighted": lambda: ("BG reweighted", smp.ImportanceSampler(flow)),
        "BG stratified": lambda: ("BG stratified", smp.StratifiedImportanceSampler(
            flow, states, pool_size=1 << 16 if quick else 1 << 20)),
        "BG as IMH proposal": lambda: ("BG as IMH proposal",
                                       smp.FlowIndependenceMetropolis(flow)),
    }
    return {m: make[m]() for m in methods}


def make_problem(name: str):
    """``(target, states, exact, start, sampler settings, flow_base, description)``."""
    if name == "double_well":
        t = DoubleWell(dim=2)
        ref = t.references()
        states = (t.state_indicator_A, t.state_indicator_B)
        exact = {"p_A": ref["p_A"], "p_B": ref["p_B"],
                 "delta_F_B_minus_A": ref["delta_F_B_minus_A"]}
        start = jnp.array([ref["minimum_A_x1"], 0.0])
        settings = dict(step_size=0.1, pt_replicas=6, pt_beta_min=0.1, smc_reference_scale=3.0)
        desc = ("DoubleWell(dim=2), a4,a2,a1,k = 1,6,1,1; A: x1<0, B: x1>0; barrier from A "
                f"{ref['barrier_height_from_A']:.2f} kT")
        return t, states, exact, start, settings, None, desc
    if name == "gmm":
        t = _gmm_target()
        comp = jax.vmap(t.component_index)

        def in_a(x):
            return comp(x.reshape(-1, 2)).reshape(x.shape[:-1]) == 0

        def in_b(x):
            return comp(x.reshape(-1, 2)).reshape(x.shape[:-1]) == 1

        states = (in_a, in_b)
        exact = _gmm_exact(t, states)
        start = jnp.asarray(t.means[0])
        settings = dict(step_size=0.1, pt_replicas=8, pt_beta_min=0.05, smc_reference_scale=4.0)
        base = DiagNormal(jnp.zeros(2), 2.5 * jnp.ones(2))
        desc = ("GaussianMixture: 3 modes, σ=0.5, weights 0.5/0.3/0.2; A: mode 0, B: mode 1 "
                "(most responsible component)")
        return t, states, exact, start, settings, base, desc
    if name == "many_well":
        t = ManyWell(dim=8)
        ref = t.references()

        def in_a(x):
            return x[..., 0] < 0

        def in_b(x):
            return x[..., 0] > 0

        states = (in_a, in_b)
        p_b = ref["p_x_positive"]
        exact = {"p_A": 1.0 - p_b, "p_B": p_b, "delta_F_B_minus_A": -math.log(p_b / (1 - p_b))}
        start = t.mode_centres()[0]  # every pair in its left well
        settings = dict(step_size=0.1, pt_replicas=6, pt_beta_min=0.1, smc_reference_scale=3.0)
        desc = ("ManyWell(dim=8): 16 modes; A: x0<0, B: x0>0 (first pair); chains start in "
                "the all-left mode")
        return t, states, exact, start, settings, None, desc
    raise ValueError(name)


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
def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    key = jax.random.key(args.seed)
    want_bg = any(m in BG_METHODS for m in args.methods)
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "notes": [
            "num_energy_evals: target energy evaluations spent sampling (warm-up included; a "
            "gradient evaluation counts as one); the BG's training evaluations are in "
            "train_energy_evals and total_energy_evals.",
            "ESS: bulk ESS (BlackJAX) of the B indicator for MCMC; Kish ESS for BG "
            "reweighted, with the Pareto k-hat of the log-weights beside it (pareto_khat; "
            "BG stratified: the largest over strata; a note when k-hat > 0.7 or ESS/N < "
            "0.1); between-run variance for SMC. ESS is undefined (null) when a chain "
            "never leaves A.",
            "wall_time_s excludes compilation (second run with warm caches); the machine may "
            "be shared, so timings are noisy.",
            "estimate ± error is p_B; delta_F is ΔF_B−A = −log(p_B/p_A) in kT with a delta-"
            "method error (Geyer's MCSE of 1_B/p_B − 1_A/p_A for MCMC, weights for the BG); "
            "MCMC rows note chains shorter than 50 tau and R-hat > 1.01.",
        ],
        "targets": {},
    }
    for ti, name in enumerate(args.targets):
        print(f"[{name}] setting up", flush=True)
        target, states, exact, start, settings, base, desc = make_problem(name)
        policy = smp.BudgetPolicy(num_particles=16 if args.quick else 64)
        k_t = jax.random.fold_in(key, ti)
        k_flow, k_cmp, k_reach = jax.random.split(k_t, 3)
        flow, train = None, None
        if want_bg:
            steps = args.steps or TRAINING[name][0]
            batch_size = args.batch_size or TRAINING[name][1]
            print(f"[{name}] training the flow: {steps} steps × {batch_size} samples "
                  f"(reverse KL)", flush=True)
            flow, train = train_flow(k_flow, target, base, args, steps, batch_size)
            print(f"[{name}]   loss {train['final_loss_mean_last_10pct']:.3f} "
                  f"(minimum −log Z = {train['minus_log_Z']:.3f}), "
                  f"{train['train_time_s_incl_compile']:.1f} s", flush=True)
        print(f"[{name}] comparing {len(args.methods)} methods at {args.budget:,} energy "
              f"evaluations each", flush=True)
        samplers = make_samplers(settings, args.methods, flow, states, args.quick)
        rows = smp.compare_samplers(
            k_cmp, target, dict(samplers.values()), energy_budget=args.budget,
            num_chains=args.chains, flow_train_evals=train["num_energy_evals"] if train else 0,
            flow_train_time=train["train_time_s_incl_compile"] if train else None,
            states=states, exact={"observable": exact["p_B"],
                                  "delta_F": exact["delta_F_B_minus_A"]},
            initial_position=start, policy=policy,
        )
        for row, m in zip(rows, samplers, strict=True):
            row["key"] = m
        table = smp.render_comparison(rows, fmt="text")
        print(table, flush=True)
        entry = {"description": desc, "exact": exact,
                 "settings": {**settings, **dataclasses.asdict(policy)},
                 "flow_training": train, "table": rows, "table_text": table}
        if args.reach == "all" or args.reach == name:
            print(f"[{name}] evaluations to reach se(ΔF) <= {args.se_target} kT within 3 se "
                  f"(×{args.reach_factor:g} from {args.reach_start:,} to at most "
                  f"{args.reach_cap:,})",
                  flush=True)
            entry["evals_to_reach"] = [
                smp.evals_to_reach(
                    jax.random.fold_in(k_reach, i), target, samplers[m][1], name=m,
                    states=states, exact_delta_F=exact["delta_F_B_minus_A"],
                    se_target=args.se_target, start_budget=args.reach_start,
                    cap=args.reach_cap, num_chains=args.chains, factor=args.reach_factor,
                    flow_train_evals=train["num_energy_evals"] if train else 0,
                    initial_position=start, policy=policy,
                )
                for i, m in enumerate(args.methods)
            ]
            for r in entry["evals_to_reach"]:
                what = (f"{r['total_energy_evals']:,} (sampling {r['sampling_energy_evals']:,}"
                        f" + training {r['train_energy_evals']:,})" if r["reached"]
                        else f"not reached within cap {r['cap']:,}")
                print(f"    {r['method']:<20} {what}", flush=True)
        results["targets"][name] = entry
        write_json(args.out / "results.json", results)  # partial results survive a crash

    results["total_time_s"] = time.perf_counter() - t_start
    write_json(args.out / "results.json", results)
    make_figure(args.out, results)
    print(f"total {results['total_time_s']:.1f} s; results in {args.out / 'results.json'}")
    return results


def make_figure(out: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    targets = list(results["targets"])
    methods = [m for m in DEFAULT_METHODS
               if any(r["key"] == m for n in targets for r in results["targets"][n]["table"])]
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(2.2 + 2.6 * len(targets), 4.2))
    colors = plt.get_cmap("tab10")
    vals = [r["ess_per_1k_evals"] for n in targets for r in results["targets"][n]["table"]
            if r.get("ess_per_1k_evals")]
    floor = 10 ** math.floor(math.log10(min(vals))) / 10 if vals else 1e-3
    for j, m in enumerate(methods):
        for i, name in enumerate(targets):
            row = next((r for r in results["targets"][name]["table"] if r["key"] == m), None)
            if row is None:
                continue
            xpos = i - 0.4 + (j + 0.5) * width
            v = row.get("ess_per_1k_evals")
            if not v:
                ax.plot([xpos], [floor * 1.5], marker="x", color=colors(j), ms=7)
                continue
            ax.bar(xpos, v, width, color=colors(j))
            tot = row.get("ess_per_1k_total_evals")
            if row.get("train_energy_evals") and tot:
                ax.bar(xpos, tot, width * 0.5, color="none", edgecolor="k", hatch="///", lw=0.6)
            d = row.get("delta_F") or {}
            z = d.get("z_score")
            if z is None or abs(z) > 3:  # estimate off by > 3 se, or no error bar
                ax.text(xpos, v * 1.15, "!", ha="center", va="bottom", fontsize=9,
                        color="crimson")
    handles = [Patch(color=colors(j), label=m) for j, m in enumerate(methods)]
    ax.set_yscale("log")
    ax.set_ylim(floor, (max(vals) if vals else 1.0) * 100)
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels(targets)
    ax.set_ylabel("ESS per 1000 energy evaluations")
    budget = results["config"]["budget"]
    ax.set_title(f"same sampling budget ({budget:,} evaluations); hatched: BG incl. training;\n"
                 "×: ESS 0 or undefined (B never visited); !: ΔF off by > 3 se or no error",
                 fontsize=9)
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"ess_per_1k_evals.{ext}", dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
