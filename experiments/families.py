"""The generative families side by side: one 2-D data set fit by a VAE, a GAN, an
autoregressive model and normalizing flows, scored by the kind of likelihood each has.

For each data set (two moons, and exact samples of the 2-D double-well Boltzmann
distribution) every family is trained on the same data and reported with: its likelihood kind
(exact / bound / none), the test NLL (exact models) or the NLL bound (VAE: ELBO and IWAE_K,
upper bounds on the NLL) with standard errors, the data entropy H (the lowest achievable
expected NLL), precision and recall (Kynkäänniemi et al. 2019), MMD² with its permutation
p-value, the 1-D Wasserstein distance between model and exact energy distributions (Boltzmann
target), the training time and the sampling time per 1000 samples. A GAN has no likelihood,
so its NLL column is empty by construction, not by omission.

Families are a registry: add one with a function decorated by ``@register(name, kind)`` that
trains on ``(N, 2)`` data and returns a :class:`Fitted`. Writes results.json, table.md and
samples.png to --out.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    continuous_model,
    estimate_dict,
    machine,
    script_parser,
    train,
    write_json,
)

import physgen  # noqa: E402
from physgen.autoregressive import AutoregressiveMixture  # noqa: E402
from physgen.datasets import get_dataset  # noqa: E402
from physgen.flows import neural_spline_flow, real_nvp  # noqa: E402
from physgen.gan import GAN, WGANGP, NonSaturatingLoss  # noqa: E402
from physgen.metrics import (  # noqa: E402
    energy_distances,
    mmd_test,
    precision_recall,
    test_nll,
    test_nll_bound,
)
from physgen.objectives import MaximumLikelihood  # noqa: E402
from physgen.targets import DoubleWell  # noqa: E402
from physgen.vae import ELBO, gaussian_vae  # noqa: E402


class Fitted(NamedTuple):
    """A trained model of one family: ``sample(key, n) -> (n, 2)`` (jitted), and
    ``likelihood(key, test) -> {label: Estimate of the test NLL or its bound}`` (empty for
    models without likelihood)."""

    model: object
    sample: Callable
    likelihood: Callable
    history: dict


class Family(NamedTuple):
    name: str
    kind: str  # "exact", "bound" or "none"
    fit: Callable  # (key, data (N, 2), args) -> Fitted


FAMILIES: dict[str, Family] = {}


def register(name: str, kind: str):
    """Add a family: ``@register("name", "exact" | "bound" | "none")`` on
    ``fit(key, data, args) -> Fitted``."""
    if kind not in ("exact", "bound", "none"):
        raise ValueError(f"likelihood kind must be exact, bound or none, got {kind!r}")

    def deco(fn):
        FAMILIES[name] = Family(name, kind, fn)
        return fn

    return deco


_sample = eqx.filter_jit(lambda m, k, n: m.sample(k, (n,)))


def _fitted(model, hist, likelihood=lambda k, test: {}) -> Fitted:
    return Fitted(model, lambda k, n: _sample(model, k, n), likelihood, hist)


def _exact_fitted(model, hist):
    return _fitted(model, hist, lambda k, test: {"exact": test_nll(model, test)})


def _fit_ml(key, model, data, args):
    ki, kf = jax.random.split(key)
    model, hist = train(kf, model, MaximumLikelihood(), args, steps=args.steps, lr=args.lr,
                        data=data, alpha=0.02)
    return _exact_fitted(model, hist)


@register("realnvp", "exact")
def fit_realnvp(key, data, args):
    ki, kf = jax.random.split(key)
    flow = real_nvp(ki, 2, num_layers=args.layers, width=args.width)
    return _fit_ml(kf, flow, data, args)


@register("nsf", "exact")
def fit_nsf(key, data, args):
    ki, kf = jax.random.split(key)
    flow = neural_spline_flow(ki, 2, num_layers=max(2, args.layers // 2), width=args.width,
                              num_bins=args.bins, interval=5.0)
    return _fit_ml(kf, flow, data, args)


@register("autoregressive", "exact")
def fit_autoregressive(key, data, args):
    ki, kf = jax.random.split(key)
    model = AutoregressiveMixture(2, key=ki, num_components=args.components, width=args.width,
                                  depth=2)
    return _fit_ml(kf, model, data, args)


@register("vae", "bound")
def fit_vae(key, data, args):
    ki, kf = jax.random.split(key)
    vae = gaussian_vae(ki, 2, args.latent_dim, width=args.width, depth=2)
    # KL annealing: β rises linearly from 0 to 1 over the first fifth of the steps
    vae, hist = train(kf, vae, ELBO(1.0, kl_warmup=max(1, args.steps // 5)), args,
                      steps=args.steps, lr=args.lr, data=data, alpha=0.02)

    def likelihood(k, test):
        k1, k2 = jax.random.split(k)
        out = {"elbo": test_nll_bound(k1, vae, test, 1)}
        sub = test[: args.num_iwae_points]
        out[f"iwae_{args.iwae_k}"] = test_nll_bound(k2, vae, sub, args.iwae_k, batch_size=64)
        return out

    return _fitted(vae, hist, likelihood)


@register("gan", "none")
def fit_gan_family(key, data, args):
    ki, kf = jax.random.split(key)
    gan = GAN(2, args.latent_dim, key=ki, width=args.width, depth=3)
    loss = WGANGP() if args.gan_loss == "wgan-gp" else NonSaturatingLoss()
    gan, hist, _ = physgen.fit(
        kf, gan, loss, data=data, steps=args.steps, batch_size=args.batch_size,
        optimizer=optax.adam(args.gan_lr, b1=0.5, b2=0.9), progress=not args.no_progress,
    )
    return _fitted(gan, hist)


def _ode_fitted(model, hist, args):
    """Continuous models: exact log_prob through an ODE solve per point (costly), so the
    NLL uses the first ``--num-test-ode`` test points."""
    return _fitted(model, hist, lambda k, test: {
        "exact": test_nll(model, test[: args.num_test_ode], batch_size=256)})


def _fit_ode(kind, key, data, args, **kw):
    """Train a continuous model (vector field or score net) and wrap it as :class:`Fitted`."""
    ki, kf = jax.random.split(key)
    model, objective = continuous_model(kind, ki, 2, width=args.width, depth=3, rtol=1e-4,
                                        atol=1e-4, **kw)
    model, hist = train(kf, model, objective, args, steps=args.steps, lr=args.lr, data=data,
                        alpha=0.02)
    return _ode_fitted(model, hist, args)


@register("flow_matching", "exact")
def fit_flow_matching(key, data, args):
    return _fit_ode("flow_matching", key, data, args, ot_coupling=False)


@register("diffusion", "exact")
def fit_diffusion(key, data, args):
    return _fit_ode("diffusion", key, data, args, weighting="sigma2")


# -- data sets ------------------------------------------------------------------------------
def make_dataset(name, key, n_train, n_test, n_entropy):
    """``(train, test, reference)``; ``reference`` holds the entropy and, for a Boltzmann
    target, its energy function."""
    k1, k2, k3 = jax.random.split(key, 3)
    if name == "double_well":
        target = DoubleWell(dim=2)
        log_z = target.log_Z()
        x = target.sample_exact(k3, n_entropy)
        u = jax.vmap(target.energy)(x) * target.beta
        lp = np.asarray(-u - log_z, dtype=np.float64)
        ref = {
            "entropy": (float(-lp.mean()), float(lp.std() / math.sqrt(lp.size))),
            "energy": target.energy,
            "beta": target.beta,
            "log_Z": log_z,
        }
        return target.sample_exact(k1, n_train), target.sample_exact(k2, n_test), ref
    ds = get_dataset(name)
    return ds.sample(k1, n_train), ds.sample(k2, n_test), {"entropy": ds.entropy(k3, n_entropy)}


def parse_args(argv=None):
    p = script_parser(__doc__, "results/families")
    p.add_argument(
        "--datasets", nargs="+", default=None,
        help="moons, rings, 8gaussians, checkerboard or double_well (default: moons and "
        "double_well; with --quick the double well only)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--gan-lr", type=float, default=5e-4)
    p.add_argument("--gan-loss", choices=["wgan-gp", "non-saturating"], default="non-saturating")
    p.add_argument("--layers", type=int, default=8, help="coupling layers (NSF: half)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--bins", type=int, default=12, help="spline bins (nsf)")
    p.add_argument("--components", type=int, default=8, help="mixture components (autoreg.)")
    p.add_argument("--latent-dim", type=int, default=2, help="VAE and GAN latent dimension")
    p.add_argument("--iwae-k", type=int, default=1000)
    p.add_argument("--num-iwae-points", type=int, default=2000)
    p.add_argument("--num-train", type=int, default=50_000)
    p.add_argument("--num-test", type=int, default=20_000)
    p.add_argument(
        "--num-test-ode",
        type=int,
        default=1000,
        help="test points for the NLL of ODE-based models (an ODE solve each)",
    )
    p.add_argument(
        "--num-metric", type=int, default=3000, help="model and test samples for precision/recall"
    )
    p.add_argument("--num-mmd", type=int, default=1500)
    p.add_argument("--num-permutations", type=int, default=200)
    args = p.parse_args(argv)
    if args.datasets is None:
        args.datasets = ["double_well"] if args.quick else ["moons", "double_well"]
    if args.quick:
        args.steps, args.layers, args.width = min(args.steps, 100), 2, 16
        args.components, args.bins = 3, 4
        args.num_train, args.num_test, args.num_metric, args.num_mmd = 2000, 500, 300, 200
        args.iwae_k, args.num_iwae_points, args.num_permutations = 16, 100, 50
        args.num_test_ode = 50
    return args


def evaluate(key, fam, fitted, test, ref, args, train_time):
    k_lik, k_s, k_t, k_mmd = jax.random.split(key, 4)
    nll = {k: estimate_dict(v) for k, v in fitted.likelihood(k_lik, test).items()}
    n_time = 10_000 if not args.quick else 1000
    jax.block_until_ready(fitted.sample(k_t, n_time))  # compile for this n
    t0 = time.perf_counter()
    jax.block_until_ready(fitted.sample(jax.random.fold_in(k_t, 1), n_time))
    sample_time = (time.perf_counter() - t0) * 1000 / n_time
    # fresh draws for the metrics and the figure (--quick: the same n, no new compile)
    samples = fitted.sample(k_s, n_time if args.quick else max(args.num_metric, args.num_mmd, 5000))
    finite = bool(jnp.all(jnp.isfinite(samples)))
    prec, rec = precision_recall(test[: args.num_metric], samples[: args.num_metric], k=3)
    mmd = mmd_test(k_mmd, test[: args.num_mmd], samples[: args.num_mmd],
                   num_permutations=args.num_permutations)
    row = {
        "family": fam.name,
        "likelihood": fam.kind,
        "test_nll": nll,
        "entropy": {"value": ref["entropy"][0], "stderr": ref["entropy"][1]},
        "precision": estimate_dict(prec),
        "recall": estimate_dict(rec),
        "mmd2": float(mmd.mmd2),
        "mmd_null_std": float(mmd.null_std),
        "mmd_p_value": float(mmd.p_value),
        "mmd_bandwidth": float(mmd.bandwidth),
        "train_time_s": train_time,
        "sample_time_per_1000_s": sample_time,
        "samples_finite": finite,
    }
    if "energy" in ref:
        ed = energy_distances(ref["energy"], samples, test, beta=ref["beta"])
        row["energy_w1_kT"] = float(ed["wasserstein_1d"])
        row["energy_tv"] = float(ed["total_variation"])
    return row, np.asarray(samples[:5000])


def _fmt(e):
    return f"{e['value']:.3f} ± {e['stderr']:.3f}"


def table(rows) -> str:
    head = ("| data | family | likelihood | test NLL (exact) or bound | H(data) | precision | "
            "recall | MMD² [p] | energy W1 (kT) | train s | sample s/1000 |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        nll = "; ".join(("NLL " if k == "exact" else f"{k.upper().replace('_', '-')} bound ")
                        + _fmt(v) for k, v in r["test_nll"].items()) or "none (no density)"
        w1 = f"{r['energy_w1_kT']:.3f}" if "energy_w1_kT" in r else "–"
        lines.append(
            f"| {r['dataset']} | {r['family']} | {r['likelihood']} | {nll} | "
            f"{_fmt(r['entropy'])} | {_fmt(r['precision'])} | {_fmt(r['recall'])} | "
            f"{r['mmd2']:.4f} [{r['mmd_p_value']:.3f}] | {w1} | {r['train_time_s']:.1f} | "
            f"{r['sample_time_per_1000_s']:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(args.seed)
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "note": (
            "test_nll: 'exact' = −mean log q(x) over the test set; 'elbo' and "
            "'iwae_K' = −mean of the bound: an UPPER bound on the VAE's NLL, "
            "so lower is better and the true NLL lies below. A GAN has no "
            "density: no NLL. Entropy H = the lowest achievable expected NLL."
        ),
        "runs": [],
    }
    panels = []
    for d_i, dname in enumerate(args.datasets):
        train_set, test, ref = make_dataset(
            dname,
            jax.random.fold_in(key, d_i),
            args.num_train,
            args.num_test,
            20_000 if args.quick else 200_000,
        )
        if "log_Z" in ref:
            results.setdefault("references", {})[dname] = {
                "log_Z": ref["log_Z"],
                "entropy": ref["entropy"],
            }
        row_panels = [("data", np.asarray(test[:5000]))]
        for f_i, fname in enumerate(args.families):
            fam = FAMILIES[fname]
            k_fit, k_eval = jax.random.split(jax.random.fold_in(key, 1000 * (d_i + 1) + f_i))
            t0 = time.perf_counter()
            fitted = fam.fit(k_fit, train_set, args)
            jax.block_until_ready(eqx.filter(fitted.model, eqx.is_array))
            train_time = time.perf_counter() - t0
            row, samples = evaluate(k_eval, fam, fitted, test, ref, args, train_time)
            row["dataset"] = dname
            results["runs"].append(row)
            row_panels.append((fname, samples))
            print(table([row]).splitlines()[-1], flush=True)
        panels.append((dname, row_panels))
    md = table(results["runs"])
    print(md)
    (args.out / "table.md").write_text(md + "\n")
    write_json(args.out / "results.json", results)
    make_figure(args.out, panels)
    return results


def make_figure(out, panels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = max(len(p) for _, p in panels)
    fig, axes = plt.subplots(
        len(panels), ncol, figsize=(2.6 * ncol, 2.6 * len(panels)), squeeze=False
    )
    for row, (dname, row_panels) in zip(axes, panels, strict=True):
        data = row_panels[0][1]
        lo, hi = np.percentile(data, 0.5, axis=0), np.percentile(data, 99.5, axis=0)
        pad = 0.25 * (hi - lo)
        for a in row:
            a.set_axis_off()
        for a, (name, s) in zip(row, row_panels, strict=False):
            a.set_axis_on()
            a.scatter(s[:, 0], s[:, 1], s=0.5, alpha=0.3, color="C0" if name == "data" else "C1")
            a.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            a.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            a.set_title(f"{dname}: {name}", fontsize=9)
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "samples.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
