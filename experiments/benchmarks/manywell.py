"""Data-free training that covers every mode: FAB vs reverse KL vs forward KL on the many-well.

Target: the many-well of Midgley et al. (ICLR 2023), ``dim/2`` independent double wells,
``2^(dim/2)`` modes, exact ``log Z`` (quadrature) and exact samples; or (``--target gmm40``)
their 2-D mixture of 40 Gaussians (``log Z = 0``).

Four methods train the SAME flow on the SAME budget of target energy evaluations:

- ``reverse_kl``: ``E_q[log q + βE]`` (data-free), ``batch`` evaluations per step;
- ``forward_kl``: maximum likelihood on exact samples (a reference that needs a sampler of the
  target: one exact sample is counted as one evaluation, so it sees ``budget`` samples);
- ``fab``: FAB without buffer (Midgley et al. 2023, Algorithm 1): AIS from ``q`` to
  ``p²/q`` with HMC transitions, loss ``-Σ w̄_AIS log q``;
- ``fab_buffer``: FAB with the prioritised replay buffer (Algorithm 2).

The budget is that of ``fab_buffer`` with ``--steps`` AIS iterations (buffer fill included).
Each trained flow is scored on ``--eval-samples`` fresh samples: ``log Z`` by importance
sampling (error against the exact value, with its standard error), Kish ESS fraction, and
the modes visited. Training is split into ``--segments`` equal parts with a scoring (on
``--curve-samples`` samples) after each, for the curves of error and ESS against energy
evaluations (``reverse_kl``/``forward_kl`` restart their Adam moments at each segment).

Writes results.json and manywell.png (or gmm40.png) to --out.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import machine, script_parser, weights_dict, write_json  # noqa: E402

import physgen  # noqa: E402
from physgen import reweighting as rw  # noqa: E402
from physgen.distributions import DiagNormal  # noqa: E402
from physgen.flows import neural_spline_flow, real_nvp  # noqa: E402
from physgen.objectives import FAB, MaximumLikelihood, ReverseKL  # noqa: E402
from physgen.samplers import HMC  # noqa: E402
from physgen.targets import ManyWell, fab_gmm40  # noqa: E402

METHODS = ("reverse_kl", "forward_kl", "fab", "fab_buffer")
PUBLISHED = {
    "manywell": {"fab_buffer_ess": 0.795, "fab_jax_log_Z_abs_error": 0.032},
    "gmm40": {"fab_buffer_ess": 0.64},
}


def parse_args(argv=None):
    p = script_parser(__doc__, "results/benchmarks/manywell", seed=False)
    p.add_argument("--target", choices=["manywell", "gmm40"], default="manywell")
    p.add_argument("--dim", type=int, default=32, help="many-well dimension (even)")
    p.add_argument("--steps", type=int, default=400,
                   help="AIS iterations of fab_buffer; fixes the evaluation budget")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per method (default 5; 1 in --quick)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="run seeds first-seed, ..., first-seed + seeds - 1 (to extend a run)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="methods, run in this order (results.json is written after each)")
    p.add_argument("--batch", type=int, default=128,
                   help="AIS chains per iteration = reverse/forward-KL batch size")
    p.add_argument("--num-intermediate", type=int, default=2, help="AIS intermediates")
    p.add_argument("--leapfrog", type=int, default=5, help="HMC leapfrog steps in AIS")
    p.add_argument("--buffer-size", type=int, default=16384)
    p.add_argument("--updates-per-ais", type=int, default=4)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--bins", type=int, default=8)
    p.add_argument("--flow", choices=["spline", "realnvp"], default="spline",
                   help="flow family: rational-quadratic spline or affine (RealNVP) couplings")
    p.add_argument("--interval", type=float, default=None,
                   help="spline half-width (default 4 on the many-well, 50 on gmm40)")
    p.add_argument("--lr", type=float, default=1e-3, help="(peak) Adam learning rate")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="learning rate: constant, or cosine decay to lr/100 over the budget")
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--eval-samples", type=int, default=100_000)
    p.add_argument("--curve-samples", type=int, default=10_000)
    args = p.parse_args(argv)
    if args.quick:
        args.dim, args.steps, args.batch = 4, 6, 32
        args.seeds = 1 if args.seeds is None else args.seeds
        args.layers, args.width, args.buffer_size, args.updates_per_ais = 2, 16, 256, 2
        args.segments, args.eval_samples, args.curve_samples = 1, 1000, 1000
        args.num_intermediate, args.leapfrog = 1, 2
    elif args.seeds is None:
        args.seeds = 5
    if args.seeds < 1 or args.first_seed < 0:
        p.error("--seeds must be >= 1 and --first-seed >= 0")
    return args


def make_problem(args):
    gmm = args.target == "gmm40"
    if gmm:
        target = fab_gmm40(jax.random.key(0), scale=math.log1p(math.e))  # softplus(1), as FAB
        dim, base = 2, DiagNormal(jnp.zeros(2), jnp.full((2,), 20.0))
        fab_kw = dict(step_size=1.0)
    else:
        target, dim, base = ManyWell(args.dim), args.dim, None
        fab_kw = dict(step_size=0.3)
    interval = args.interval if args.interval is not None else (50.0 if gmm else 4.0)

    def flow_fn(key):
        if args.flow == "realnvp":
            return real_nvp(key, dim, num_layers=args.layers, width=args.width, base=base)
        return neural_spline_flow(
            key, dim, num_layers=args.layers, width=args.width, num_bins=args.bins,
            interval=interval, base=base,
        )

    return target, dim, flow_fn, fab_kw


def mode_ids(target, x):
    if isinstance(target, ManyWell):
        return np.asarray(target.mode_index(x))
    return np.asarray(jax.vmap(target.component_index)(x))


@eqx.filter_jit
def _sample_log_w(flow, target, key, n):
    bg = physgen.BoltzmannGenerator(flow, target)
    return bg.sample_and_log_weights(key, n, batch_size=10_000)


def score(target, flow, key, n):
    """log Z error (± se), ESS fraction with the Pareto k̂ beside it, and modes visited from
    ``n`` flow samples; a non-finite log-weight (an energy overflow far out) counts as a
    weight of zero, and their number is reported."""
    x, lw = _sample_log_w(flow, target, key, n)
    lw, modes = np.asarray(lw, np.float64), mode_ids(target, x)
    bad = int(np.sum(~np.isfinite(lw)))
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    est = rw.log_Z(jnp.asarray(lw))
    counts = np.bincount(modes)
    out = {
        "log_Z": float(est.value),
        "log_Z_stderr": float(est.stderr),
        "log_Z_error": float(est.value) - target.log_Z(),
        **weights_dict(lw, "flow weights"),  # ess, ess_fraction, pareto_khat, weight_warnings
        "num_nonfinite_log_w": bad,
        "modes_visited": int(np.count_nonzero(counts)),
        "num_samples": n,
    }
    if not isinstance(target, ManyWell):
        k = target.means.shape[0]
        share = np.bincount(modes, minlength=k) / n
        out["fraction_modes_covered"] = float(np.mean(share >= 0.25 / k))
    return out


def optimizer(args, total_steps: int):
    """``None`` (fit's Adam at ``learning_rate=args.lr``), or Adam with a cosine decay over
    ``total_steps``; segments continue one run (its state), so the decay keeps its place."""
    if args.schedule == "constant":
        return None
    return optax.adam(optax.cosine_decay_schedule(args.lr, total_steps, alpha=0.01))


def fab_objective(method, args, target, fab_kw):
    buffered = method == "fab_buffer"
    return FAB(
        target,
        args.batch,
        transition=HMC(fab_kw["step_size"], args.leapfrog, adapt=False),
        num_intermediate=args.num_intermediate,
        buffer_size=args.buffer_size if buffered else None,
        updates_per_ais=args.updates_per_ais,
    )


def train(method, args, target, flow, fab_kw, budget, key, segments):
    """Train in ``segments`` equal parts of one run (continued from its state); yields
    ``(model, evals_so_far, seconds)`` after each."""
    n, data = args.batch, None
    if method == "reverse_kl":
        objective, per_step, steps = ReverseKL(target, n), n, max(1, budget // n // segments)
    elif method == "forward_kl":
        objective, per_step, steps = MaximumLikelihood(), n, max(1, budget // n // segments)
        data = target.sample_exact(jax.random.fold_in(key, 99), segments * steps * n)
    else:
        objective, per_step = fab_objective(method, args, target, fab_kw), None
        per_ais = objective.energy_evals_per_ais()
        fill = objective.num_fill_runs() * per_ais
        # one fit step per gradient update: with the buffer, updates_per_ais per AIS run
        steps = max(1, (budget - fill) // per_ais // segments) * objective.updates_per_ais
    model, state, opt = flow, None, optimizer(args, segments * steps)
    t0 = time.perf_counter()
    for s in range(segments):
        chunk = None if data is None else data[s * steps * n: (s + 1) * steps * n]
        model, hist, state = physgen.fit(key, model, objective, steps=steps,
                                         learning_rate=args.lr, optimizer=opt, data=chunk,
                                         batch_size=n, state=state, progress=False)
        used = (int(hist["cumulative_energy_evals"][-1]) if per_step is None
                else (s + 1) * steps * per_step)
        yield model, used, time.perf_counter() - t0


def figure(path, results, target, args, samples):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results["methods"])
    fig, axes = plt.subplots(1, 2 + len(methods), figsize=(4 * (2 + len(methods)), 3.6))
    for m in methods:
        curves = results["methods"][m]["curves"]
        ev = np.array([[c["energy_evals"] for c in s] for s in curves])
        err = np.array([[abs(c["log_Z_error"]) for c in s] for s in curves])
        ess = np.array([[c["ess_fraction"] for c in s] for s in curves])
        axes[0].errorbar(
            ev.mean(0), err.mean(0), err.std(0) / math.sqrt(len(err)), marker="o", label=m
        )
        axes[1].errorbar(
            ev.mean(0), ess.mean(0), ess.std(0) / math.sqrt(len(ess)), marker="o", label=m
        )
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="energy evaluations",
        ylabel="|log Ẑ − log Z|",
        title="log Z error (flow IS)",
    )
    axes[1].set(
        xscale="log", xlabel="energy evaluations", ylabel="ESS / N", title="flow ESS", ylim=(0, 1)
    )
    axes[0].legend(fontsize=7)
    # marginal of the first pair (or the 2-D plane) over the exact density
    if isinstance(target, ManyWell):
        g = np.linspace(-3, 3, 200)
        gx, gy = np.meshgrid(g, g)
        pts = np.zeros((gx.size, target.dim))
        pts[:, 0], pts[:, 1] = gx.ravel(), gy.ravel()
        e_pair = pts[:, 0] ** 4 - 6 * pts[:, 0] ** 2 - 0.5 * pts[:, 0] + 0.5 * pts[:, 1] ** 2
        dens = np.exp(-e_pair).reshape(gx.shape)
        lim = (-3, 3)
    else:
        g = np.linspace(-50, 50, 300)
        gx, gy = np.meshgrid(g, g)
        pts = np.stack([gx.ravel(), gy.ravel()], -1)
        dens = np.exp(-np.asarray(jax.vmap(target.energy)(jnp.asarray(pts)))).reshape(gx.shape)
        lim = (-50, 50)
    for ax, m in zip(axes[2:], methods, strict=True):
        ax.contour(gx, gy, dens, levels=8, colors="k", linewidths=0.5)
        x = samples[m]
        ax.plot(x[:, 0], x[:, 1], ".", ms=1, alpha=0.3)
        ax.set(xlim=lim, ylim=lim, title=f"{m} (x₀, x₁)", xlabel="x₀", ylabel="x₁")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    target, dim, flow_fn, fab_kw = make_problem(args)
    probe = fab_objective("fab_buffer", args, target, fab_kw)
    per_ais = probe.energy_evals_per_ais()
    fill = probe.num_fill_runs() * per_ais
    budget = fill + args.steps * per_ais
    print(
        f"target={args.target} dim={dim} log Z={target.log_Z():.6f} budget={budget} "
        f"energy evaluations ({per_ais} per AIS iteration)",
        flush=True,
    )
    results = {
        "target": args.target,
        "dim": dim,
        "exact_log_Z": target.log_Z(),
        "energy_budget": budget,
        "energy_evals_per_ais_iteration": per_ais,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "published": PUBLISHED[args.target],
        "machine": machine(),
        "methods": {},
    }
    if isinstance(target, ManyWell):
        results["num_modes"] = 2 ** (dim // 2)
    samples = {}
    for method in args.methods:
        finals, curves, times = [], [], []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            key = jax.random.key(1000 * seed + 7)
            k_flow, k_train, k_eval = jax.random.split(key, 3)
            flow = flow_fn(k_flow)
            curve = []
            model = flow
            secs = 0.0
            for model, used, secs in train(
                method,
                args,
                target,
                flow,
                fab_kw,
                budget,
                k_train,
                args.segments,
            ):
                sc = score(target, model, jax.random.fold_in(k_eval, used), args.curve_samples)
                curve.append({"energy_evals": used, "train_seconds": secs, **sc})
            final = score(target, model, k_eval, args.eval_samples)
            final.update(seed=seed, energy_evals=used, train_seconds=secs)
            finals.append(final)
            curves.append(curve)
            times.append(secs)
            print(
                f"{method} seed {seed}: log Z err {final['log_Z_error']:+.4f} "
                f"± {final['log_Z_stderr']:.4f}, ESS {final['ess_fraction']:.3f} (k̂ "
                f"{final['pareto_khat']:.2f}{', unreliable' if final['weight_warnings'] else ''}), "
                f"modes {final['modes_visited']}, evals {used}, {secs:.0f} s",
                flush=True,
            )
            if seed == args.first_seed:
                samples[method] = np.asarray(model.sample(jax.random.key(3), (3000,)))
        err = np.array([f["log_Z_error"] for f in finals])
        ess = np.array([f["ess_fraction"] for f in finals])
        khat = np.array([f["pareto_khat"] for f in finals])
        modes = np.array([f["modes_visited"] for f in finals])
        s = math.sqrt(len(finals))
        summary = {
            "log_Z_mae": float(np.mean(np.abs(err))),
            "log_Z_mae_stderr": float(np.std(np.abs(err), ddof=1) / s) if s > 1 else 0.0,
            "log_Z_error_mean": float(err.mean()),
            "ess_fraction_mean": float(ess.mean()),
            "ess_fraction_stderr": float(ess.std(ddof=1) / s) if s > 1 else 0.0,
            "pareto_khat_mean": float(khat.mean()),
            "pareto_khat_stderr": float(khat.std(ddof=1) / s) if s > 1 else None,
            "modes_visited_mean": float(modes.mean()),
            "energy_evals": int(np.mean([f["energy_evals"] for f in finals])),
            "train_seconds_mean": float(np.mean(times)),
        }
        if "fraction_modes_covered" in finals[0]:
            cov = np.array([f["fraction_modes_covered"] for f in finals])
            summary["fraction_modes_covered_mean"] = float(cov.mean())
        results["methods"][method] = {"summary": summary, "seeds": finals, "curves": curves}
        print(
            f"== {method}: MAE {summary['log_Z_mae']:.4f} ± {summary['log_Z_mae_stderr']:.4f}"
            f", ESS {summary['ess_fraction_mean']:.3f} ± {summary['ess_fraction_stderr']:.3f}"
            f", k̂ {summary['pareto_khat_mean']:.2f}"
            f", modes {summary['modes_visited_mean']:.0f}",
            flush=True,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "results.json", results)
    figure(args.out / f"{args.target}.png", results, target, args, samples)
    write_json(args.out / "results.json", results)
    return results


if __name__ == "__main__":
    main()
