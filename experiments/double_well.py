"""Boltzmann generator on the double well of Noé et al. (2019), trained without data.

E(x) = a4 x1⁴ − a2 x1² + a1 x1 + ½ k Σ_{i≥2} x_i²  (defaults 1, 6, 1, 1), p(x) ∝ exp(−βE).

1. Train a flow q by reverse KL, E_q[log q + βE] (data-free; or forward KL / the mix of both
   on HMC data). With ``--model flow_matching`` or ``--model cnf`` q is instead a continuous
   normalizing flow trained in the forward direction on HMC data from both wells (conditional
   flow matching, or maximum likelihood through the ODE), whose exact log-likelihood comes from
   the ODE with the exact Jacobian trace.
2. Reweight N flow samples with w = exp(−βE)/q: ESS, log Z, p_A, ΔF_{B−A} = −log(p_B/p_A)
   with standard errors, a bootstrap interval, and z-scores against the exact quadrature.
3. Answer the same question with HMC started in the left well, which stays trapped.

Writes results.json and figures (PNG and PDF) to --out.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    CONTINUOUS,
    continuous_model,
    estimate_dict,
    machine,
    mesh_from_args,
    script_parser,
    train,
    weights_dict,
    write_json,
)
from _comparison_figure import comparison_figure  # noqa: E402

import physgen  # noqa: E402
from physgen import reweighting as rw, samplers as smp  # noqa: E402
from physgen.diagnostics import mean_and_mcse  # noqa: E402
from physgen.flows import masked_autoregressive_flow, neural_spline_flow, real_nvp  # noqa: E402
from physgen.objectives import MaximumLikelihood, MixedKL, ReverseKL  # noqa: E402
from physgen.samplers import HMC, run_mcmc  # noqa: E402
from physgen.targets import DoubleWell  # noqa: E402

FLOWS = {"nsf": neural_spline_flow, "realnvp": real_nvp, "maf": masked_autoregressive_flow}


def train_forward(key, data, args):
    """A continuous-time model (``--model``) trained forward on ``data``: the CNF and flow
    matching on the ``--ode-*`` vector field, diffusion on a (128, 4) score net."""
    k_init, k_fit = jax.random.split(key)
    diffusion = args.model == "diffusion"
    width, depth = ((32, 2) if args.quick else (128, 4)) if diffusion else (args.ode_width,
                                                                             args.ode_depth)
    model, objective = continuous_model(args.model, k_init, args.dim, width=width, depth=depth,
                                        embed_dim=args.embed_dim, rtol=args.rtol, atol=args.atol)
    return train(k_fit, model, objective, args, steps=args.ode_steps, lr=args.ode_lr, data=data,
                 checkpoint=args.out / "flow.ckpt", metadata={**vars(args), "out": str(args.out)})


def parse_args(argv=None):
    p = script_parser(__doc__, "results/double_well", devices=True)
    p.add_argument("--objective", choices=["reverse_kl", "forward_kl", "mixed"],
                   default="reverse_kl", help="forward_kl and mixed train on HMC samples")
    p.add_argument("--forward-weight", type=float, default=1.0,
                   help="weight of the self-normalised forward-KL gradient added to reverse KL "
                        "(same samples, no extra energy evaluations); 0 = plain reverse KL")
    p.add_argument("--model", choices=["nsf", *CONTINUOUS], default="nsf",
                   help="nsf: the discrete flow of --flow trained by --objective; "
                        "flow_matching / cnf: a continuous flow trained on HMC data from both "
                        "wells and reweighted with its exact ODE likelihood")
    p.add_argument("--flow", choices=sorted(FLOWS), default="nsf")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--bins", type=int, default=16, help="spline bins (nsf)")
    p.add_argument("--width", type=int, default=32, help="conditioner width")
    p.add_argument("--steps", type=int, default=1000, help="training steps")
    p.add_argument("--batch-size", type=int, default=256, help="samples per training step")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--temperature", type=float, default=1.0, help="kT; beta = 1/kT")
    p.add_argument("--dim", type=int, default=2, help="x1 plus dim-1 harmonic coordinates")
    p.add_argument("--num-samples", type=int, default=500_000,
                   help="flow samples for reweighting")
    p.add_argument("--hmc-chains", type=int, default=16)
    p.add_argument("--hmc-samples", type=int, default=2000, help="HMC draws per chain")
    p.add_argument("--compare", action="store_true",
                   help="also run HMC, NUTS, MALA, parallel tempering, tempered SMC and the BG "
                        "as an IMH proposal on the same energy budget (adds a few minutes)")
    p.add_argument("--compare-budget", type=int, default=100_000,
                   help="sampling energy evaluations per method in the comparison")
    g = p.add_argument_group("continuous models (--model flow_matching / cnf / diffusion)")
    g.add_argument("--ode-steps", type=int, default=5000, help="training steps")
    g.add_argument("--ode-lr", type=float, default=2e-3, help="peak learning rate")
    g.add_argument("--ode-width", type=int, default=64, help="vector-field MLP width")
    g.add_argument("--ode-depth", type=int, default=3, help="vector-field MLP hidden layers")
    g.add_argument("--embed-dim", type=int, default=16, help="Fourier time features")
    g.add_argument("--rtol", type=float, default=1e-5, help="ODE solver tolerances")
    g.add_argument("--atol", type=float, default=1e-5)
    g.add_argument("--ode-num-samples", type=int, default=100_000,
                   help="model samples for reweighting (one ODE solve each)")
    g.add_argument("--data-chains", type=int, default=16,
                   help="HMC chains for the training data, half started in each well")
    g.add_argument("--data-samples", type=int, default=2000, help="HMC draws per data chain")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.num_samples = min(args.steps, 200), min(args.num_samples, 20_000)
        args.hmc_chains, args.hmc_samples = min(args.hmc_chains, 4), min(args.hmc_samples, 300)
        args.ode_steps, args.ode_num_samples = min(args.ode_steps, 100), 2000
        args.ode_width, args.ode_depth, args.embed_dim = 16, 2, 8
        args.data_chains, args.data_samples = 4, 300
    if args.model != "nsf":
        args.num_samples = args.ode_num_samples
    return args


def run_hmc(key, target, x1_starts, num_samples, mesh=None, timed=False):
    """HMC chains, one started at the bottom of each well ``x1_starts`` (``(n,)``), split
    over ``mesh`` if given; returns the result and its wall time (with ``timed``, run once
    more so that compilation is excluded)."""
    x0 = jnp.zeros((len(x1_starts), target.dim)).at[:, 0].set(jnp.asarray(x1_starts))
    kw = dict(num_chains=len(x1_starts), num_samples=num_samples, num_warmup=200,
              initial_position=x0, mesh=mesh)
    if timed:
        run_mcmc(key, HMC(0.1, 10), target, **kw).samples.block_until_ready()
    t0 = time.perf_counter()
    res = run_mcmc(key, HMC(0.1, 10), target, **kw)
    res.samples.block_until_ready()
    return res, time.perf_counter() - t0


def main(argv=None):
    args = parse_args(argv)
    mesh = mesh_from_args(args)  # before any JAX computation (creates CPU devices)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    target = DoubleWell(dim=args.dim, beta=1.0 / args.temperature)
    ref = target.references()
    key = jax.random.key(args.seed)
    k_flow, k_fit, k_sample, k_boot, k_hmc = jax.random.split(key, 5)

    # -- HMC from the left well: the baseline, and data for forward KL ------------------
    hmc, hmc_time = run_hmc(k_hmc, target, [ref["minimum_A_x1"]] * args.hmc_chains,
                            args.hmc_samples, mesh, timed=True)
    hmc_x = np.asarray(hmc.samples).reshape(-1, args.dim)

    # -- Boltzmann generator ------------------------------------------------------------
    if args.model == "nsf":
        factory = FLOWS[args.flow]
        kw = dict(num_layers=args.layers, width=args.width)
        if args.flow == "nsf":
            kw.update(num_bins=args.bins, interval=5.0)
        flow = factory(k_flow, args.dim, **kw)
        physgen.BoltzmannGenerator(flow, target)  # refuses a flow of the wrong dimension
        if args.objective == "reverse_kl":
            objective = ReverseKL(target, args.batch_size, forward_weight=args.forward_weight)
            data = None
        elif args.objective == "forward_kl":
            objective, data = MaximumLikelihood(), jnp.asarray(hmc_x)
        else:
            objective, data = MixedKL(target, args.batch_size), jnp.asarray(hmc_x)
        t0 = time.perf_counter()
        flow, history = train(
            k_fit, flow, objective, args, steps=args.steps, lr=args.lr, data=data, mesh=mesh,
            checkpoint=args.out / "flow.ckpt", metadata={**vars(args), "out": str(args.out)},
        )
        train_time = time.perf_counter() - t0
        train_evals = args.steps * args.batch_size if args.objective != "forward_kl" else 0
        model_info = {"objective": args.objective, "flow": args.flow}
    else:
        # forward direction on HMC data from chains started half in each well (B is
        # over-represented; reweighting with the exact likelihood corrects that); the HMC
        # energy evaluations that made the data count as training cost
        t0 = time.perf_counter()
        n = max(2, args.data_chains - args.data_chains % 2)
        res, _ = run_hmc(jax.random.fold_in(k_hmc, 1), target,
                         [ref["minimum_A_x1"]] * (n // 2) + [ref["minimum_B_x1"]] * (n // 2),
                         args.data_samples)
        data, train_evals = np.asarray(res.samples).reshape(-1, args.dim), res.num_energy_evals
        flow, history = train_forward(k_fit, jnp.asarray(data), args)
        physgen.BoltzmannGenerator(flow, target)
        train_time = time.perf_counter() - t0
        model_info = {"objective": f"{args.model} on HMC data from both wells",
                      "flow": f"continuous ({args.model})", "num_training_data": len(data),
                      "training_data_fraction_in_B": float(np.mean(data[:, 0] > 0))}

    # -- reweighting ----------------------------------------------------------------------
    t0 = time.perf_counter()
    bg = physgen.BoltzmannGenerator(flow, target)
    x, log_w = eqx.filter_jit(
        lambda b, k: b.sample_and_log_weights(k, args.num_samples, mesh=mesh))(bg, k_sample)
    in_a, in_b = target.state_indicator_A(x), target.state_indicator_B(x)
    weights = weights_dict(log_w, "flow weights")
    log_z = rw.log_Z(log_w)
    log_z_bound = rw.log_Z_lower_bound(log_w)
    p_a = rw.expectation(log_w, in_a.astype(log_w.dtype))
    d_f = rw.free_energy_difference(log_w, in_a, in_b, key=k_boot, n_boot=500)
    mean_x1 = rw.expectation(log_w, x[:, 0])
    profile = rw.free_energy_profile(log_w, x[:, 0], 60, range=(-3.0, 3.0))
    jax.block_until_ready(profile)
    reweight_time = time.perf_counter() - t0

    # -- HMC estimates (trapped) ----------------------------------------------------------
    b_ind = (np.asarray(hmc.samples)[..., 0] > 0).astype(float)  # (chains, samples)
    pb, pb_se = mean_and_mcse(b_ind)  # Geyer's MCSE: 0 for a constant indicator, never NaN
    hmc_crossed = int(np.sum(np.any(b_ind > 0, axis=1)))

    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "target": {"name": "DoubleWell", "dim": args.dim, "beta": target.beta,
                   "exact_references": ref},
        "boltzmann_generator": {
            "model": args.model,
            **model_info,
            "train_time_s": train_time,
            "initial_loss_mean_first_10": float(np.mean(history["loss"][:10])),
            "final_loss_mean_last_100": float(np.mean(history["loss"][-100:])),
            "num_energy_evals_training": train_evals,
            "num_energy_evals_reweighting": args.num_samples,
            "num_energy_evals_total": train_evals + args.num_samples,
            **weights,  # ess, ess_fraction, pareto_khat, weight_warnings
            "log_Z": estimate_dict(log_z, ref["log_Z"]),
            "log_Z_lower_bound": estimate_dict(log_z_bound, ref["log_Z"]),
            "p_A": estimate_dict(p_a, ref["p_A"]),
            "delta_F_B_minus_A_kT": estimate_dict(d_f, ref["delta_F_B_minus_A"], bootstrap=True),
            "mean_x1": estimate_dict(mean_x1, ref["mean_x1"]),
            "reweighting_time_s": reweight_time,
        },
        "hmc": {
            "start": "left well minimum (state A)",
            "num_chains": args.hmc_chains,
            "num_samples_per_chain": args.hmc_samples,
            "chains_that_visited_B": hmc_crossed,
            "acceptance_rate": float(np.mean(np.asarray(hmc.acceptance_rate))),
            "num_energy_evals": int(hmc.num_energy_evals),
            "num_grad_evals": int(hmc.num_grad_evals),
            "wall_time_s": hmc_time,
            # no crossing: 1[x1 > 0] = 0 everywhere and the MCSE is 0: z = -inf
            "p_B": {"value": pb, "stderr": pb_se, "exact": ref["p_B"],
                    "zscore": (pb - ref["p_B"]) / pb_se if pb_se > 0 else -math.inf},
        },
    }
    if args.compare:
        budget = min(args.compare_budget, 20_000) if args.quick else args.compare_budget
        states = (target.state_indicator_A, target.state_indicator_B)
        inner = smp.HMC(0.1, 5, adapt=False)
        samplers = {
            "HMC (L=10, adapted)": smp.HMC(0.1, 10), "NUTS (adapted)": smp.NUTS(0.1),
            "MALA (adapted)": smp.MALA(0.1),
            "PT (HMC, K=6, β_min=0.1)": smp.ParallelTempering(inner, smp.geometric_ladder(6, 0.1)),
            "tempered SMC (HMC, 4 moves)": smp.TemperedSMC(inner, num_mcmc_steps=4),
            "BG reweighted": smp.ImportanceSampler(flow),
            "BG stratified": smp.StratifiedImportanceSampler(flow, states),
            "BG as IMH proposal": smp.FlowIndependenceMetropolis(flow),
        }
        rows = smp.compare_samplers(
            jax.random.fold_in(key, 7), target, samplers, energy_budget=budget,
            num_chains=4 if args.quick else 8, flow_train_evals=train_evals,
            flow_train_time=train_time, states=states,
            exact={"observable": ref["p_B"], "delta_F": ref["delta_F_B_minus_A"]},
            initial_position=jnp.zeros(args.dim).at[0].set(ref.get("minimum_A_x1", -1.77)),
            log=None if args.no_progress else print,
        )
        results["comparison"] = {"energy_budget_per_method": budget, "observable": "1[x1 > 0]",
                                 "table": rows}
        (args.out / "comparison.md").write_text(smp.render_comparison(rows) + "\n")
        comparison_figure(args.out / "ess_per_evaluation", {"double_well": [rows]},
                          title=f"double well, same sampling budget ({budget:,} evaluations)")
    results["total_time_s"] = time.perf_counter() - t_start
    write_json(args.out / "results.json", results)
    make_figures(args.out, target, history, np.asarray(x), np.asarray(log_w), profile, hmc)
    print_summary(results)
    if args.compare:
        print((args.out / "comparison.md").read_text())
    return results


def print_summary(r):
    bg, hmc = r["boltzmann_generator"], r["hmc"]

    def line(name, d):
        return (f"  {name:<22} {d['value']:+.5f} ± {d['stderr']:.5f}   exact {d['exact']:+.5f}"
                f"   z = {d['zscore']:+.2f}")

    print(f"Boltzmann generator ({bg['flow']}, {bg['objective']}), "
          f"train {bg['train_time_s']:.1f} s, {bg['num_energy_evals_total']:,} energy evaluations")
    print(f"  ESS fraction           {bg['ess_fraction']:.4f}   Pareto k̂ {bg['pareto_khat']:.2f}"
          + "".join(f"\n  warning: {w}" for w in bg["weight_warnings"]))
    print(line("ΔF_B−A [kT]", bg["delta_F_B_minus_A_kT"]))
    print(line("log Z", bg["log_Z"]))
    print(line("p_A", bg["p_A"]))
    print(f"HMC from the left well: {hmc['chains_that_visited_B']} of {hmc['num_chains']} chains "
          f"visited B, {hmc['num_energy_evals']:,} energy evaluations")
    if hmc["chains_that_visited_B"] == 0:
        print(f"  p_B (HMC)              +0.00000 (no chain crossed the barrier: the Monte Carlo "
              f"error is not estimable)   exact {hmc['p_B']['exact']:+.5f}")
    else:
        print(line("p_B (HMC)", hmc["p_B"]))
    print(f"total {r['total_time_s']:.1f} s; results in results.json")


def make_figures(out, target, history, x, log_w, profile, hmc):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, name):
        fig.tight_layout()
        for ext in ("png", "pdf"):
            fig.savefig(out / f"{name}.{ext}", dpi=120)
        plt.close(fig)

    # training loss, with -log Z: the minimum of the reverse KL
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history["loss"], lw=0.6, label="training loss")
    if "reverse_kl" in history:
        ax.axhline(-target.log_Z(), color="k", ls="--", lw=1, label="−log Z (minimum)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_ylim(np.percentile(history["loss"], 1) - 0.2, np.percentile(history["loss"], 99) + 0.5)
    ax.legend()
    save(fig, "training_loss")

    # samples over the exact density (x1, x2)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    g1, g2 = np.meshgrid(np.linspace(-3, 3, 200), np.linspace(-3.5, 3.5, 200))
    grid = np.stack([g1.ravel(), g2.ravel()] + [np.zeros(g1.size)] * (target.dim - 2), -1)
    e = np.asarray(jax.vmap(target.energy)(jnp.asarray(grid))).reshape(g1.shape)
    p = np.exp(-target.beta * e - target.log_Z())
    from matplotlib.colors import LogNorm

    # log colour scale: the right well holds only 3% of the mass
    norm = LogNorm(vmin=1e-5, vmax=p.max())
    axes[0].pcolormesh(g1, g2, np.maximum(p, 1e-5), norm=norm, cmap="viridis", shading="auto")
    axes[0].set_title("exact Boltzmann density (log scale)")
    axes[1].hist2d(x[:100000, 0], x[:100000, 1], bins=100, range=[[-3, 3], [-3.5, 3.5]],
                   cmap="viridis", density=True, norm=norm)
    axes[1].set_title("flow samples, unweighted (log scale)")
    for a in axes:
        a.set_xlabel("x1")
        a.set_ylabel("x2")
    save(fig, "samples")

    # free-energy profile along x1
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    xs = np.linspace(-3, 3, 400)
    ax.plot(xs, target.free_energy_profile(xs), "k-", lw=1.2, label="exact")
    c, f, se = (np.asarray(profile.centres), np.asarray(profile.free_energy),
                np.asarray(profile.stderr))
    ok = np.isfinite(f)
    ax.errorbar(c[ok], f[ok], yerr=se[ok], fmt="o", ms=3, capsize=2,
                label="Boltzmann generator (reweighted)")
    h, edges = np.histogram(np.asarray(hmc.samples)[..., 0].ravel(), bins=60, range=(-3, 3),
                            density=True)
    hc = 0.5 * (edges[1:] + edges[:-1])
    ax.plot(hc[h > 0], -np.log(h[h > 0]), "s", ms=3, mfc="none", label="HMC histogram")
    ax.set_xlabel("x1")
    ax.set_ylabel("F(x1) [kT]")
    ax.set_ylim(-1, 14)
    ax.legend()
    save(fig, "free_energy_profile")

    # HMC trace: trapped in the left well
    fig, ax = plt.subplots(figsize=(6, 3))
    for chain in np.asarray(hmc.samples)[:4, :, 0]:
        ax.plot(chain, lw=0.5)
    ax.axhline(0, color="k", ls=":", lw=0.8)
    ax.set_xlabel("HMC draw")
    ax.set_ylabel("x1")
    ax.set_title("HMC started in the left well")
    save(fig, "hmc_trace")


if __name__ == "__main__":
    main()
