"""Generative models on 2-D toy data: test NLL against the exact data entropy, per family.

Families (``--model``, several at once): discrete normalizing flows trained by maximum
likelihood (RealNVP ``realnvp``, neural spline flow ``nsf``), a continuous normalizing flow
trained by maximum likelihood with Hutchinson's trace estimator (``cnf``, FFJORD), and the same
continuous flow trained by conditional flow matching with minibatch optimal-transport coupling
(``flow_matching``). Every family has an exact log-likelihood (the continuous ones through the
ODE with the exact Jacobian trace). For each, report the test negative log-likelihood with its
standard error, the entropy of the data distribution H = −E_p[log p] (the lowest achievable
expected test NLL, from the exact density) and the gap NLL − H = KL(p‖q) ≥ 0; the density is
integrated on a grid as a check that it is normalised. Writes results.json and figures (data,
samples and density per family; learned trajectories of the continuous families) to --out.

A family is one entry of ``FAMILIES``: a :class:`Family` that trains a model and, optionally,
draws its trajectories; adding a model family is adding an entry.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    continuous_model,
    machine,
    num_parameters,
    script_parser,
    train,
    trajectories,
    write_json,
)

from physgen.datasets import DATASETS, get_dataset  # noqa: E402
from physgen.flows import neural_spline_flow, real_nvp, with_tolerances  # noqa: E402
from physgen.objectives import MaximumLikelihood  # noqa: E402

log_prob = eqx.filter_jit(lambda model, x: model.log_prob(x))


class Family:
    """One model family: ``train(key, data, args) -> (model, history)`` returns a trained
    distribution with exact ``log_prob`` and ``sample``; ``continuous`` families draw their
    ODE trajectories for the figure and, costlier to evaluate (an ODE solve per point), use
    ``--num-test-ode`` test points and a coarser density grid."""

    def __init__(self, train: Callable, description: str, continuous: bool = False):
        self.train, self.description, self.continuous = train, description, continuous


def train_discrete(factory):
    def fit_family(key, data, args):
        k_init, k_fit, _ = jax.random.split(key, 3)
        kw = dict(num_layers=args.layers, width=args.width)
        if factory is neural_spline_flow:
            kw.update(num_bins=args.bins, interval=5.0)
        return train(k_fit, factory(k_init, 2, **kw), MaximumLikelihood(), args,
                     steps=args.steps, lr=args.lr, data=data)

    return fit_family


def train_continuous(kind):
    """The continuous family ``kind``; the CNF trains with looser ODE tolerances
    (``--train-rtol``) and is evaluated with ``--rtol``."""

    def fit_family(key, data, args):
        k_init, k_fit = jax.random.split(key)
        diffusion = kind == "diffusion"
        model, objective = continuous_model(
            kind, k_init, 2, width=args.diff_width if diffusion else args.ode_width,
            depth=args.diff_depth if diffusion else args.ode_depth, embed_dim=args.embed_dim,
            rtol=args.rtol, atol=args.atol, ot_coupling=not args.no_ot,
            ot_epsilon=args.ot_epsilon, ot_iters=args.ot_iters,
        )
        if kind == "cnf":
            model = with_tolerances(model, args.train_rtol, args.train_atol)
        steps, lr = {"cnf": (args.cnf_steps, args.cnf_lr), "flow_matching": (args.fm_steps,
                     args.fm_lr), "diffusion": (args.diff_steps, args.diff_lr)}[kind]
        model, hist = train(k_fit, model, objective, args, steps=steps, lr=lr, data=data)
        return with_tolerances(model, args.rtol, args.atol), hist

    return fit_family


FAMILIES: dict[str, Family] = {
    "realnvp": Family(train_discrete(real_nvp), "RealNVP, maximum likelihood"),
    "nsf": Family(train_discrete(neural_spline_flow), "neural spline flow, maximum likelihood"),
    "cnf": Family(train_continuous("cnf"),
                  "continuous flow (FFJORD), maximum likelihood, Hutchinson trace", True),
    "flow_matching": Family(train_continuous("flow_matching"),
                            "continuous flow, conditional flow matching with OT coupling", True),
    "diffusion": Family(train_continuous("diffusion"),
                        "VP diffusion, denoising score matching; probability-flow ODE density",
                        True),
}


def parse_args(argv=None):
    p = script_parser(__doc__, "results/toy2d")
    p.add_argument("--dataset", choices=sorted(DATASETS), nargs="+", default=["moons", "rings"])
    p.add_argument("--model", choices=sorted(FAMILIES), nargs="+", default=None,
                   help="model families to train side by side (default: those of --flows)")
    p.add_argument("--flows", choices=["nsf", "realnvp"], nargs="+", default=["realnvp", "nsf"],
                   help="discrete flows to train when --model is not given")
    p.add_argument("--steps", type=int, default=6000, help="training steps (discrete flows)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--bins", type=int, default=16, help="spline bins (nsf)")
    g = p.add_argument_group("continuous families (cnf, flow_matching, diffusion)")
    g.add_argument("--ode-width", type=int, default=64, help="vector-field MLP width")
    g.add_argument("--ode-depth", type=int, default=3, help="vector-field MLP hidden layers")
    g.add_argument("--embed-dim", type=int, default=16, help="Fourier time features")
    g.add_argument("--rtol", type=float, default=1e-5, help="ODE tolerance for evaluation")
    g.add_argument("--atol", type=float, default=1e-5)
    g.add_argument("--train-rtol", type=float, default=1e-3, help="ODE tolerance, cnf training")
    g.add_argument("--train-atol", type=float, default=1e-3)
    g.add_argument("--cnf-steps", type=int, default=1500)
    g.add_argument("--cnf-lr", type=float, default=2e-3)
    g.add_argument("--fm-steps", type=int, default=10000)
    g.add_argument("--fm-lr", type=float, default=2e-3)
    g.add_argument("--diff-steps", type=int, default=30000, help="diffusion training steps")
    g.add_argument("--diff-width", type=int, default=128, help="diffusion score-net width")
    g.add_argument("--diff-depth", type=int, default=4, help="diffusion score-net depth")
    g.add_argument("--diff-lr", type=float, default=2e-3, help="diffusion learning rate")
    g.add_argument("--no-ot", action="store_true", help="flow matching without OT coupling")
    g.add_argument("--ot-epsilon", type=float, default=0.02,
                   help="entropic OT regularisation, relative to the mean pair cost")
    g.add_argument("--ot-iters", type=int, default=50, help="Sinkhorn iterations per batch")
    g.add_argument("--num-test-ode", type=int, default=10_000,
                   help="test points for the continuous families (one ODE solve each)")
    p.add_argument("--num-train", type=int, default=100_000)
    p.add_argument("--num-test", type=int, default=50_000)
    args = p.parse_args(argv)
    if args.model is None:
        args.model = list(args.flows)
    if args.quick:
        args.steps, args.layers, args.width = min(args.steps, 150), min(args.layers, 2), 16
        args.cnf_steps, args.fm_steps = min(args.cnf_steps, 20), min(args.fm_steps, 150)
        args.diff_steps = min(args.diff_steps, 150)
        args.diff_width, args.diff_depth = min(args.diff_width, 32), min(args.diff_depth, 2)
        args.ode_width, args.ode_depth, args.embed_dim = 16, 2, 8
        args.num_train, args.num_test, args.num_test_ode = 2000, 2000, 300
        args.batch_size = min(args.batch_size, 256)
    return args


def grid_integral(model, lim=6.0, n=400):
    """∫ q(x) dx over [-lim, lim]² by the midpoint rule, and the grid for plotting."""
    h = 2 * lim / n
    c = -lim + h * (np.arange(n) + 0.5)
    g1, g2 = np.meshgrid(c, c)
    pts = jnp.asarray(np.stack([g1.ravel(), g2.ravel()], -1), dtype=jnp.result_type(float))
    logq = np.asarray(log_prob(model, pts)).reshape(n, n)
    return float(np.sum(np.exp(logq)) * h * h), g1, g2, logq


@eqx.filter_jit
def _sample(model, key, n: int):
    return model.sample(key, (n,))


def mean_and_stderr(values):
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(args.seed)
    results = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "machine": machine(), "runs": []}
    panels, paths = [], []
    for d_i, name in enumerate(args.dataset):
        ds = get_dataset(name)
        k_tr, k_te, k_h = jax.random.split(jax.random.fold_in(key, d_i), 3)
        train, test = ds.sample(k_tr, args.num_train), ds.sample(k_te, args.num_test)
        h, h_se = ds.entropy(k_h, 20_000 if args.quick else 200_000)
        for f_i, fname in enumerate(args.model):
            family = FAMILIES[fname]
            k_family = jax.random.fold_in(key, 1000 + 10 * d_i + f_i)
            k_train, k_traj = k_family, jax.random.fold_in(k_family, 1)
            k_s = jax.random.split(k_family, 3)[2]
            t0 = time.perf_counter()
            model, hist = family.train(k_train, train, args)
            train_time = time.perf_counter() - t0
            t0 = time.perf_counter()
            test_f = test[: args.num_test_ode] if family.continuous else test
            lp = np.asarray(log_prob(model, test_f), dtype=np.float64)
            nll, nll_se = mean_and_stderr(-lp)
            # NLL − H: the two are independent estimates, their errors add in quadrature.
            grid = (100 if args.quick else 150) if family.continuous else 400
            integral, g1, g2, logq = grid_integral(model, n=grid)
            n_plot = 2000 if args.quick else 5000
            samples = np.asarray(_sample(model, k_s, n_plot))
            eval_time = time.perf_counter() - t0
            run = {
                "dataset": name, "flow": fname, "family": family.description,
                "train_time_s": train_time, "eval_time_s": eval_time,
                "final_loss_mean_last_100": float(np.mean(hist["loss"][-100:])),
                "num_test": int(lp.size),
                "test_nll": {"value": nll, "stderr": nll_se},
                "entropy": {"value": h, "stderr": h_se},
                "gap_nll_minus_entropy": {"value": nll - h, "stderr": math.hypot(nll_se, h_se)},
                "density_integral_on_grid": integral,
                "num_parameters": num_parameters(model),
            }
            results["runs"].append(run)
            print(f"{name:>12} {fname:>13}: test NLL {nll:.4f} ± {nll_se:.4f}, entropy "
                  f"{h:.4f} ± {h_se:.4f}, gap {nll - h:+.4f}, ∫q = {integral:.4f}, "
                  f"train {train_time:.1f} s")
            panels.append((name, fname, np.asarray(test[:5000]), samples, g1, g2, logq))
            if family.continuous:
                paths.append((name, fname, trajectories(model, k_traj,
                                                        100 if args.quick else 300)))
    write_json(args.out / "results.json", results)
    print_table(results["runs"])
    make_figure(args.out, panels)
    if paths:
        make_trajectory_figure(args.out, paths)
    return results


def print_table(runs):
    print(f"\n{'dataset':>12} {'family':>13} {'test NLL':>18} {'entropy H':>18} {'NLL − H':>18}")
    for r in runs:
        f = "{value:.4f} ± {stderr:.4f}".format
        print(f"{r['dataset']:>12} {r['flow']:>13} {f(**r['test_nll']):>18} "
              f"{f(**r['entropy']):>18} {f(**r['gap_nll_minus_entropy']):>18}")


def make_figure(out, panels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 3, figsize=(9, 3 * len(panels)), squeeze=False)
    for row, (name, fname, data, samples, g1, g2, logq) in zip(axes, panels, strict=True):
        row[0].scatter(data[:, 0], data[:, 1], s=1, alpha=0.4)
        row[0].set_title(f"{name}: data")
        row[1].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4, color="C1")
        row[1].set_title(f"{fname}: samples")
        row[2].pcolormesh(g1, g2, np.exp(logq), shading="auto", cmap="viridis")
        row[2].set_title(f"{fname}: density")
        for a in row:
            a.set_xlim(-5, 5)
            a.set_ylim(-5, 5)
            a.set_aspect("equal")
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"toy2d.{ext}", dpi=110)
    plt.close(fig)


def make_trajectory_figure(out, panels):
    """Paths x(t) from the base (grey dots) to the data (coloured dots) per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4),
                             squeeze=False)
    for ax, (name, fname, paths) in zip(axes[0], panels, strict=True):
        ax.plot(paths[:, :, 0], paths[:, :, 1], color="k", lw=0.3, alpha=0.3)
        ax.scatter(paths[0, :, 0], paths[0, :, 1], s=3, color="0.5", label="t0 (base)")
        ax.scatter(paths[-1, :, 0], paths[-1, :, 1], s=3, color="C3", label="t1 (model)")
        ax.set_title(f"{name}: {fname} trajectories")
        ax.set_xlim(-5, 5)
        ax.set_ylim(-5, 5)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"trajectories.{ext}", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
