"""physgen vs flowjax: the same RealNVP and neural spline flow, timed side by side in one run.

Both libraries build the flow with the same sizes (coupling layers, conditioner width and
depth, ReLU, spline bins and interval), the same base ``N(0, I)``, batch and dtype. Every
timed function is the same code for both; only the model differs:

- training step: ``loss = −mean log q(x)`` on a fixed batch, ``eqx.filter_value_and_grad``
  and ``optax.adam`` in one ``eqx.filter_jit`` (the model and optimiser state are donated
  neither way);
- sampling + log-density: ``sample_and_log_prob(key, (n,))``, jitted;
- compile time vs depth: lowering + compiling the training step for 2 ... 32 layers;
- for every row where physgen is slower (or all, ``--profile-all``): XLA's cost analysis of
  both compiled samplers and the times of their parts (base draws; the bijection).

Times are after compilation: ``--repeats`` repeats of ``--inner`` calls each, the two
libraries interleaved repeat by repeat so that a change in the machine's load hits both. The
ratio column is the median over repeats of the paired ratio flowjax time / physgen time
(> 1: physgen faster), with its interquartile range in results.json.
Writes results.json and vs_flowjax.{png,pdf} to ``--out``; needs the ``bench`` extra
(``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import machine, write_json  # noqa: E402

from physgen.flows import neural_spline_flow, real_nvp  # noqa: E402

FLOWS = ("realnvp", "nsf")
LIBRARIES = ("physgen", "flowjax")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks/vs_flowjax"))
    p.add_argument("--quick", action="store_true", help="tiny sizes for tests (seconds)")
    p.add_argument("--flows", nargs="+", choices=FLOWS, default=list(FLOWS))
    p.add_argument("--dims", nargs="+", type=int, default=[2, 16])
    p.add_argument("--layers", type=int, default=8, help="coupling layers")
    p.add_argument("--width", type=int, default=64, help="conditioner width")
    p.add_argument("--depth", type=int, default=2, help="conditioner hidden layers")
    p.add_argument("--bins", type=int, default=8, help="spline bins (NSF)")
    p.add_argument("--interval", type=float, default=4.0, help="spline interval [-B, B]")
    p.add_argument("--batch-size", type=int, default=256, help="training batch")
    p.add_argument("--num-samples", type=int, default=10_000, help="samples per sampling call")
    p.add_argument("--repeats", type=int, default=21, help="timed repeats (median reported)")
    p.add_argument("--inner", type=int, default=20, help="calls per timed repeat")
    p.add_argument("--compile-layers", nargs="+", type=int, default=[2, 4, 8, 16, 32])
    p.add_argument("--x64", action="store_true", help="float64 (default float32)")
    p.add_argument("--profile-all", action="store_true",
                   help="profile every row (default: only rows where physgen is slower)")
    args = p.parse_args(argv)
    if args.quick:
        args.dims = [2]
        args.layers, args.width, args.depth = 2, 16, 1
        args.batch_size, args.num_samples = 32, 256
        args.repeats, args.inner = 2, 2
        args.compile_layers = [1, 2]
    return args


# ----------------------------------------------------------------------------- models
def build(library: str, flow: str, key, dim: int, layers: int, args):
    if library == "physgen":
        if flow == "realnvp":
            return real_nvp(key, dim, num_layers=layers, width=args.width, depth=args.depth)
        return neural_spline_flow(key, dim, num_layers=layers, num_bins=args.bins,
                                  interval=args.interval, width=args.width, depth=args.depth)
    from flowjax.bijections import Affine, RationalQuadraticSpline
    from flowjax.distributions import Normal
    from flowjax.flows import coupling_flow

    transformer = (Affine() if flow == "realnvp"
                   else RationalQuadraticSpline(knots=args.bins, interval=args.interval))
    return coupling_flow(key, base_dist=Normal(jnp.zeros(dim)), transformer=transformer,
                         flow_layers=layers, nn_width=args.width, nn_depth=args.depth,
                         nn_activation=jax.nn.relu)


def _loss(model, x):
    return -jnp.mean(model.log_prob(x))


def make_train_step(optimizer):
    @eqx.filter_jit
    def step(model, opt_state, x):
        loss, grads = eqx.filter_value_and_grad(_loss)(model, x)
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return eqx.apply_updates(model, updates), opt_state, loss

    return step


@eqx.filter_jit
def sample_and_log_prob(model, key, n: int):
    return model.sample_and_log_prob(key, (n,))


def _paired_times(fns: dict, repeats: int, inner: int) -> dict[str, list[float]]:
    """Per-call wall times (s) of each function in ``fns``, ``repeats`` times, interleaved
    (A, B, A, B, ...) so that drifts in the machine's load hit both libraries alike."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                out = fn()
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - t0) / inner)
    return times


def prepare(library: str, flow: str, dim: int, args) -> dict:
    """Build, compile and check one library's model; return its timed calls."""
    key = jax.random.key(0)
    model = build(library, flow, key, dim, args.layers, args)
    params = eqx.filter(model, eqx.is_inexact_array)
    n_params = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
    x = jax.random.normal(jax.random.key(1), (args.batch_size, dim))
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    step = make_train_step(optimizer)

    t0 = time.perf_counter()
    jax.block_until_ready(step(model, opt_state, x))
    first_step = time.perf_counter() - t0
    state = {"model": model, "opt": opt_state}

    def train_call():
        state["model"], state["opt"], loss = step(state["model"], state["opt"], x)
        return loss

    ks = jax.random.key(2)
    jax.block_until_ready(sample_and_log_prob(model, ks, args.num_samples))
    # a correctness anchor: the two libraries are timed on models that actually work
    xs, lp = sample_and_log_prob(model, ks, 64)
    if not (bool(jnp.all(jnp.isfinite(lp))) and bool(jnp.all(jnp.isfinite(xs)))):
        raise FloatingPointError(f"{library} {flow}: non-finite samples or log-densities")
    return {"num_params": n_params, "first_step_incl_compile_s": first_step,
            "train": train_call,
            "sample": lambda: sample_and_log_prob(model, ks, args.num_samples)}


def time_pair(flow: str, dim: int, args) -> dict:
    """Both libraries on one (flow, dim): interleaved timings, medians and paired ratios."""
    prepared = {lib: prepare(lib, flow, dim, args) for lib in LIBRARIES}
    train = _paired_times({lib: p["train"] for lib, p in prepared.items()},
                          args.repeats, args.inner)
    sample = _paired_times({lib: p["sample"] for lib, p in prepared.items()},
                           args.repeats, max(1, args.inner // 4))
    row = {"flow": flow, "dim": dim}
    for lib, p in prepared.items():
        t_step, t_sample = float(np.median(train[lib])), float(np.median(sample[lib]))
        row[lib] = {"num_params": p["num_params"], "train_step_s": t_step,
                    "train_steps_per_s": 1.0 / t_step, "sample_and_log_prob_s": t_sample,
                    "samples_per_s": args.num_samples / t_sample,
                    "first_step_incl_compile_s": p["first_step_incl_compile_s"]}
    for what, times in (("train_step", train), ("sampling", sample)):
        ratios = np.asarray(times["flowjax"]) / np.asarray(times["physgen"])
        q = np.quantile(ratios, [0.25, 0.5, 0.75])
        row[f"{what}_ratio_flowjax_over_physgen"] = float(q[1])
        row[f"{what}_ratio_interquartile"] = [float(q[0]), float(q[2])]
    return row


def _base_of(model):
    return model.base if hasattr(model, "base") else model.base_dist


def profile(flow: str, dim: int, args) -> dict:
    """Where the sampling time goes, per library: XLA's cost analysis of the compiled
    ``sample_and_log_prob`` (flops, transcendentals, bytes accessed), and the times of its
    two parts, the base draws and the bijection on pre-drawn base samples."""
    n = args.num_samples
    z = jax.random.normal(jax.random.key(5), (n, dim))
    out = {}
    parts = {}
    for lib in LIBRARIES:
        model = build(lib, flow, jax.random.key(0), dim, args.layers, args)
        params, static = eqx.partition(model, eqx.is_array)
        compiled = jax.jit(
            lambda p, k, static=static: eqx.combine(p, static).sample_and_log_prob(k, (n,))
        ).lower(params, jax.random.key(2)).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        out[lib] = {"xla_cost": {k: float(cost[k]) for k in
                                 ("flops", "transcendentals", "bytes accessed") if k in cost}}
        base, bij = _base_of(model), model.bijection
        draw = eqx.filter_jit(lambda b, k: b.sample_and_log_prob(k, (n,)))
        # the bijection's forward map is what sampling applies (flowjax's coupling_flow wraps
        # its layers in Invert, so there it runs the couplings' inverses)
        push = eqx.filter_jit(lambda f, x: jax.vmap(f.transform_and_log_det)(x))
        jax.block_until_ready((draw(base, jax.random.key(3)), push(bij, z)))
        parts[f"{lib}_base_draws"] = lambda d=draw, b=base: d(b, jax.random.key(3))
        parts[f"{lib}_bijection"] = lambda f=push, b=bij: f(b, z)
    times = _paired_times(parts, args.repeats, max(1, args.inner // 4))
    for name, t in times.items():
        lib, part = name.split("_", 1)
        out[lib][f"{part}_s"] = float(np.median(t))
    return out


def compile_time(library: str, flow: str, dim: int, layers: int, args) -> float:
    model = build(library, flow, jax.random.key(0), dim, layers, args)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    x = jnp.zeros((args.batch_size, dim))
    step = make_train_step(optimizer)
    t0 = time.perf_counter()
    step.lower(model, opt_state, x).compile()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    args.out.mkdir(parents=True, exist_ok=True)
    import flowjax

    rows, compile_rows = [], []
    for flow in args.flows:
        for dim in args.dims:
            print(f"[{flow} dim={dim}] physgen and flowjax, interleaved", flush=True)
            row = time_pair(flow, dim, args)
            if min(row["train_step_ratio_flowjax_over_physgen"],
                   row["sampling_ratio_flowjax_over_physgen"]) < 1.0 or args.profile_all:
                print(f"[{flow} dim={dim}] profile", flush=True)
                row["profile"] = profile(flow, dim, args)
            rows.append(row)
        for layers in args.compile_layers:
            c = {"flow": flow, "dim": args.dims[0], "layers": layers}
            for lib in LIBRARIES:
                c[f"{lib}_compile_s"] = compile_time(lib, flow, args.dims[0], layers, args)
            compile_rows.append(c)
            print(f"[{flow}] compile, {layers} layers: physgen {c['physgen_compile_s']:.2f} s, "
                  f"flowjax {c['flowjax_compile_s']:.2f} s", flush=True)

    table = render(rows)
    print(table)
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "versions": {"flowjax": flowjax.__version__ if hasattr(flowjax, "__version__")
                     else "unknown", "jax": jax.__version__, "equinox": eqx.__version__},
        "dtype": str(jnp.result_type(float)),
        "rows": rows,
        "compile_time_vs_layers": compile_rows,
        "table_text": table,
        "notes": ["ratio = flowjax time / physgen time: > 1 means physgen is faster; the median "
                  "over repeats of paired (interleaved) timings.",
                  "Times after compilation; the machine may be shared."],
    }
    write_json(args.out / "results.json", results)
    make_figure(args.out, rows, compile_rows)
    return results


def render(rows) -> str:
    head = (f"{'flow':<8}{'dim':>5}{'params':>9}  {'step physgen':>13}{'step flowjax':>13}"
            f"{'ratio':>7}  {'samp/s physgen':>15}{'samp/s flowjax':>15}{'ratio':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        p, f = r["physgen"], r["flowjax"]
        lines.append(
            f"{r['flow']:<8}{r['dim']:>5}{p['num_params']:>9}  "
            f"{p['train_step_s'] * 1e3:>10.3f} ms{f['train_step_s'] * 1e3:>10.3f} ms"
            f"{r['train_step_ratio_flowjax_over_physgen']:>7.2f}  "
            f"{p['samples_per_s']:>15.3e}{f['samples_per_s']:>15.3e}"
            f"{r['sampling_ratio_flowjax_over_physgen']:>7.2f}")
    return "\n".join(lines)


def make_figure(out: Path, rows, compile_rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    labels = [f"{r['flow']}\nd={r['dim']}" for r in rows]
    xs = np.arange(len(rows))
    axes[0].bar(xs - 0.2, [r["train_step_ratio_flowjax_over_physgen"] for r in rows], 0.4,
                label="training step")
    axes[0].bar(xs + 0.2, [r["sampling_ratio_flowjax_over_physgen"] for r in rows], 0.4,
                label="sample + log_prob")
    axes[0].axhline(1.0, color="k", lw=0.8)
    axes[0].set_xticks(xs)
    axes[0].set_xticklabels(labels)
    axes[0].set_ylabel("flowjax time / physgen time")
    axes[0].set_title("speed ratio (> 1: physgen faster)")
    axes[0].legend(fontsize=8)
    for flow, marker in zip(FLOWS, ("o", "s"), strict=True):
        cs = [c for c in compile_rows if c["flow"] == flow]
        if not cs:
            continue
        layers = [c["layers"] for c in cs]
        axes[1].plot(layers, [c["physgen_compile_s"] for c in cs], marker=marker, color="C0",
                     label=f"physgen {flow}")
        axes[1].plot(layers, [c["flowjax_compile_s"] for c in cs], marker=marker, color="C1",
                     ls="--", label=f"flowjax {flow}")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("coupling layers")
    axes[1].set_ylabel("compile time of a training step (s)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"vs_flowjax.{ext}", dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
