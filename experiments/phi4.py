"""Lattice φ⁴ theory sampled by a flow with an exact Metropolis correction, against HMC/NUTS.

S(φ) = Σ_x [Σ_μ φ(x)(2φ(x) − φ(x+μ̂) − φ(x−μ̂)) + m²φ(x)² + λφ(x)⁴] on an L×L periodic
lattice (Albergo, Kanwar & Shanahan, PRD 100, 034515 (2019)).

1. Train a checkerboard flow with periodic conv conditioners, after a learned scale per lattice
   momentum (--fourier), by reverse KL, E_q[log q + S], with the path gradient
   (--path-gradient; both on by default).
2. Flow-based independence Metropolis (flow-IMH) and direct reweighting of flow samples.
3. HMC (and optionally NUTS) on the same action.
4. For each method: acceptance, τ_int of |M|, M and S (Γ-method, with errors), energy and
   gradient evaluations, ⟨|M|⟩, χ₂, Binder cumulant, G(t) and the pole mass, with errors.

Ensembles (--ensemble): E1..E5 of the paper (m² = −4, ξ ≈ L/4), "tutorial" (L = 8, m² = −4,
λ = 8, χ₂ = 0.75 ± 0.01 in the public tutorial), "broken" (L = 8, m² = −4, λ = 3, ordered
phase; the flow is then a Z2-symmetrised mixture, ½[q₀(φ) + q₀(−φ)], so that q₀ learns one
sector and every proposal lands in either with probability ½). Writes results.json and
figures to --out.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    estimate_dict,
    machine,
    num_parameters,
    script_parser,
    train,
    weights_dict,
    weights_text,
    write_json,
)

import physgen  # noqa: E402
from physgen import (
    observables as obs,  # noqa: E402
    reweighting as rw,  # noqa: E402
)
from physgen.distributions import Z2Symmetrized  # noqa: E402
from physgen.flows import lattice_flow  # noqa: E402
from physgen.objectives import ReverseKL  # noqa: E402
from physgen.samplers import HMC, NUTS, FlowIndependenceMetropolis, run_mcmc  # noqa: E402
from physgen.targets import ALBERGO_ENSEMBLES, Phi4  # noqa: E402

ENSEMBLES = {
    **ALBERGO_ENSEMBLES,
    "tutorial": {"L": 8, "m2": -4.0, "lam": 8.0},
    "broken": {"L": 8, "m2": -4.0, "lam": 3.0},
}
TUTORIAL_CHI2 = (0.75, 0.01)


def parse_args(argv=None):
    p = script_parser(__doc__, None, out_help="output folder (default results/phi4/<ensemble>)")
    p.add_argument("--ensemble", choices=sorted(ENSEMBLES), default="E2")
    p.add_argument("--L", type=int, default=None, help="override the ensemble's L")
    p.add_argument("--m2", type=float, default=None, help="override the ensemble's m²")
    p.add_argument("--lam", type=float, default=None, help="override the ensemble's λ")
    p.add_argument("--coupling", choices=["affine", "spline"], default="affine")
    p.add_argument(
        "--z2",
        choices=["auto", "none", "equivariant", "mixture"],
        default="auto",
        help="how the flow respects φ → −φ: 'equivariant' (odd conditioners, f(−z) = −f(z)), "
        "'mixture' (q = ½[q₀(φ) + q₀(−φ)], Z2Symmetrized), or 'none' "
        "(auto: mixture for the broken phase, none otherwise)",
    )
    p.add_argument("--layers", type=int, default=16, help="coupling layers (even)")
    p.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[16, 16],
        help="hidden channels of the conv conditioners",
    )
    p.add_argument("--kernel", type=int, default=3, help="conv kernel size")
    p.add_argument(
        "--fourier",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="learned momentum-space scaling between the base and the couplings "
        "(a translation-invariant Gaussian prior)",
    )
    p.add_argument("--steps", type=int, default=7000, help="training steps (0: no training)")
    p.add_argument("--batch-size", type=int, default=128, help="flow samples per step")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay)")
    p.add_argument(
        "--path-gradient",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="path (sticking-the-landing) gradient of the reverse KL: lower variance near "
        "convergence, one extra inverse pass per step (default: on, except for the Z2 "
        "mixture, whose step it makes about twice as slow on a CPU)",
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from a flow saved by an earlier run (its flow.eqx; same architecture "
        "options); --steps 0 only samples it",
    )
    p.add_argument("--imh-chains", type=int, default=4)
    p.add_argument("--imh-samples", type=int, default=5000, help="flow-IMH steps per chain")
    p.add_argument(
        "--reweight-samples",
        type=int,
        default=20_000,
        help="independent flow samples for reweighting",
    )
    p.add_argument("--mcmc", choices=["hmc", "nuts", "both"], default="hmc")
    p.add_argument("--hmc-chains", type=int, default=4)
    p.add_argument("--hmc-samples", type=int, default=2500, help="HMC draws per chain")
    p.add_argument("--hmc-warmup", type=int, default=500)
    p.add_argument("--leapfrog", type=int, default=10, help="HMC leapfrog steps per move")
    args = p.parse_args(argv)
    if args.quick:
        args.L = 4 if args.L is None else args.L
        args.steps, args.layers, args.hidden = min(args.steps, 60), 2, [4]
        args.batch_size = min(args.batch_size, 64)
        args.imh_samples, args.reweight_samples = min(args.imh_samples, 200), 500
        args.hmc_samples, args.hmc_warmup = min(args.hmc_samples, 200), 100
        args.imh_chains, args.hmc_chains = 2, 2
    ens = ENSEMBLES[args.ensemble]
    args.L = ens["L"] if args.L is None else args.L
    args.m2 = ens["m2"] if args.m2 is None else args.m2
    args.lam = ens["lam"] if args.lam is None else args.lam
    if args.out is None:
        args.out = Path("results/phi4") / args.ensemble
    return args


def tau(series) -> dict:
    """τ_int = 1 + 2Σρ (Geyer) of a (chains, samples) series; window_found: chains > 50 τ."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = obs.integrated_autocorrelation_time(series)
    return {"tau": t.tau, "stderr": t.error, "window": t.window, "window_found": not caught}


def analyse(phi, energy, *, log_w=None) -> dict:
    """Observables of an ensemble: MCMC chains (C, S, L, L) or weighted samples (N, L, L)."""
    out = {k: estimate_dict(e) for k, e in obs.lattice_summary(phi, energy, log_w=log_w).items()}
    if log_w is None:
        m = np.asarray(obs.magnetization(phi), np.float64)
        out["tau_int"] = {"abs_M": tau(np.abs(m)), "M": tau(m), "action": tau(energy)}
        out["sign_changes_of_M_per_chain"] = np.sum(
            np.diff(np.sign(m), axis=1) != 0, axis=1
        ).tolist()
    return out


@eqx.filter_jit
def _energies(target, x):
    return jax.vmap(jax.vmap(target.energy))(x)


def run_sampler(key, sampler, target, *, chains, samples, warmup, init=None):
    kw = dict(num_chains=chains, num_samples=samples, num_warmup=warmup, initial_position=init)
    t0 = time.perf_counter()
    res = run_mcmc(key, sampler, target, **kw)
    res.samples.block_until_ready()
    wall = time.perf_counter() - t0
    energy = np.asarray(_energies(target, res.samples), np.float64)
    out = analyse(np.asarray(res.samples), energy)
    steps = chains * (samples + warmup)
    out.update(
        {
            "num_chains": chains,
            "num_samples_per_chain": samples,
            "num_warmup": warmup,
            "acceptance_rate": float(np.mean(np.asarray(res.acceptance_rate))),
            "num_energy_evals": res.num_energy_evals,
            "num_grad_evals": res.num_grad_evals,
            "num_flow_evals": res.num_flow_evals,
            "energy_evals_per_step": res.num_energy_evals / steps,
            "grad_evals_per_step": res.num_grad_evals / steps,
            "wall_time_s_incl_compile": wall,
        }
    )
    cost = max(out["grad_evals_per_step"], out["energy_evals_per_step"])
    out["energy_evals_per_independent_sample"] = {
        k: {"value": v["tau"] * cost, "stderr": v["stderr"] * cost}
        for k, v in out["tau_int"].items()
    }
    if "step_size" in res.extras:
        out["step_size"] = np.asarray(res.extras["step_size"]).tolist()
    return out, res, energy


def ess_curve(ess, num_windows: int = 10) -> dict:
    """Mean batch ESS fraction over ``num_windows`` consecutive windows of training steps."""
    ess = np.asarray(ess, np.float64)
    edges = np.linspace(0, len(ess), num_windows + 1).astype(int)
    return {
        "window_end_step": edges[1:].tolist(),
        "mean_ess_fraction": [
            float(np.mean(ess[a:b])) for a, b in zip(edges[:-1], edges[1:], strict=True)
        ],
    }


def figures(out: Path, history, runs, L):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss = history["loss"]
    if len(loss):  # no training curve for --steps 0
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        ax[0].plot(loss, lw=0.5, alpha=0.5, label="reverse KL  E_q[log q + S]")
        k = max(1, len(loss) // 50)
        ax[0].plot(np.arange(k - 1, len(loss)), np.convolve(loss, np.ones(k) / k, "valid"), lw=1.5)
        ax[0].set_xlabel("training step"), ax[0].set_ylabel("loss"), ax[0].legend(fontsize=7)
        ax[1].plot(history["ess_fraction"], lw=0.5)
        ax[1].set_xlabel("training step"), ax[1].set_ylabel("ESS fraction (batch)")
        fig.tight_layout(), fig.savefig(out / "training.png", dpi=120), plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, (_, res, _) in runs.items():
        m = np.asarray(obs.magnetization(res.samples)).ravel()
        ax.hist(m, bins=60, density=True, histtype="step", label=name)
    ax.set_xlabel("M = mean φ"), ax.set_ylabel("density"), ax.legend(fontsize=7)
    fig.tight_layout(), fig.savefig(out / "magnetisation_histogram.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.4))
    t = np.arange(L)
    for i, (name, (r, _, _)) in enumerate(runs.items()):
        g = r["G_t"]
        ax.errorbar(t + 0.08 * i, g["value"], g["stderr"], fmt="o-", ms=3, capsize=2, label=name)
    ax.set_yscale("log"), ax.set_xlabel("t"), ax.set_ylabel("G(t)"), ax.legend(fontsize=7)
    fig.tight_layout(), fig.savefig(out / "correlator.png", dpi=120), plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.4))
    names = list(runs)
    for j, obsname in enumerate(["abs_M", "M", "action"]):
        vals = [runs[n][0]["energy_evals_per_independent_sample"][obsname] for n in names]
        ax.bar(
            np.arange(len(names)) + 0.27 * (j - 1),
            [v["value"] for v in vals],
            0.27,
            yerr=[v["stderr"] for v in vals],
            label=f"τ_int({obsname}) × cost/step",
        )
    ax.set_xticks(np.arange(len(names)), names), ax.set_yscale("log")
    ax.set_ylabel("energy(+grad) evals per indep. sample"), ax.legend(fontsize=7)
    fig.tight_layout(), fig.savefig(out / "tau_int.png", dpi=120), plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    z2 = args.z2 if args.z2 != "auto" else ("mixture" if args.ensemble == "broken" else "none")
    if args.path_gradient is None:
        args.path_gradient = z2 != "mixture"
    target = Phi4(args.L, args.m2, args.lam)
    kappa, lam_t = target.hopping_parameters()
    key = jax.random.key(args.seed)
    k_flow, k_fit, k_imh, k_rw, k_hmc, k_nuts = jax.random.split(key, 6)

    # -- flow, trained by reverse KL ------------------------------------------------------
    flow = lattice_flow(
        k_flow,
        args.L,
        num_layers=args.layers,
        hidden_channels=tuple(args.hidden),
        kernel_size=args.kernel,
        coupling=args.coupling,
        z2_equivariant=z2 == "equivariant",
        fourier=args.fourier,
    )
    if z2 == "mixture":
        flow = Z2Symmetrized(flow)
    if args.init is not None:
        meta = physgen.load_metadata(args.init)
        if (meta.get("L"), meta.get("m2"), meta.get("lam")) != (args.L, args.m2, args.lam):
            warnings.warn(
                f"{args.init} was trained at L={meta.get('L')} m2={meta.get('m2')} "
                f"lam={meta.get('lam')}; it is used here at L={args.L} m2={args.m2} "
                f"lam={args.lam}",
                stacklevel=1,
            )
        flow = physgen.load(args.init, flow)
    t0 = time.perf_counter()
    history = {"loss": np.zeros(0), "ess_fraction": np.zeros(0)}
    if args.steps > 0:
        objective = ReverseKL(target, args.batch_size, path_gradient=args.path_gradient)
        flow, history = train(k_fit, flow, objective, args, steps=args.steps, lr=args.lr)
    train_time = time.perf_counter() - t0
    flow_info = {
        "coupling": args.coupling, "z2": z2, "num_layers": args.layers,
        "hidden_channels": list(args.hidden), "kernel_size": args.kernel,
        "fourier": args.fourier, "train_steps": args.steps,
        "init": None if args.init is None else str(args.init),
    }
    physgen.save(args.out / "flow.eqx", flow, metadata={
        "ensemble": args.ensemble, "L": args.L, "m2": args.m2, "lam": args.lam, **flow_info})

    # -- reweighting of independent flow samples ------------------------------------------
    @eqx.filter_jit
    def draw(f, k):
        x, lq = f.sample_and_log_prob(k, (args.reweight_samples,))
        e = jax.vmap(target.energy)(x)
        return x, e, -e - lq

    x_rw, e_rw, log_w = draw(flow, k_rw)
    reweighted = analyse(np.asarray(x_rw), np.asarray(e_rw), log_w=np.asarray(log_w))
    reweighted.update(weights_dict(log_w, "flow weights"), num_samples=args.reweight_samples,
                      log_Z=estimate_dict(rw.log_Z(log_w)),  # ESS with Pareto k̂ beside it
                      log_Z_lower_bound=estimate_dict(rw.log_Z_lower_bound(log_w)))

    # -- flow-IMH and HMC / NUTS on the same action ---------------------------------------
    runs = {"flow_imh": run_sampler(k_imh, FlowIndependenceMetropolis(flow), target,
                                    chains=args.imh_chains, samples=args.imh_samples, warmup=0)}
    # MCMC starts from small random fields (both signs of M equally likely)
    init = 0.1 * jax.random.normal(k_hmc, (args.hmc_chains, args.L, args.L))
    mcmc = {"hmc": (k_hmc, HMC(0.1, args.leapfrog)), "nuts": (k_nuts, NUTS(0.1))}
    for name in ("hmc", "nuts") if args.mcmc == "both" else (args.mcmc,):
        k, sampler = mcmc[name]
        runs[name] = run_sampler(k, sampler, target, chains=args.hmc_chains,
                                 samples=args.hmc_samples, warmup=args.hmc_warmup, init=init)

    def agree(a, b):
        d = a["value"] - b["value"]
        s = math.hypot(a["stderr"], b["stderr"])
        return {"difference": d, "stderr": s, "zscore": d / s if s > 0 else math.inf}

    mc = "hmc" if "hmc" in runs else "nuts"
    comparison = {
        q: agree(runs["flow_imh"][0][q], runs[mc][0][q])
        for q in ("abs_M", "chi2", "action", "binder")
    }
    comparison.update(
        {f"reweighted_{q}": agree(reweighted[q], runs[mc][0][q]) for q in ("abs_M", "chi2")}
    )
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "target": {
            "name": "Phi4",
            "ensemble": args.ensemble,
            "L": args.L,
            "m2": args.m2,
            "lam": args.lam,
            "kappa": kappa,
            "lam_tilde": lam_t,
            "action": "S = sum_x [sum_mu phi(x)(2phi(x) - phi(x+mu) - phi(x-mu)) "
            "+ m2 phi^2 + lam phi^4]",
        },
        "flow": {
            **flow_info,
            "num_parameters": num_parameters(flow),
            "batch_size": args.batch_size,
            "train_time_s": train_time,
            "train_energy_grad_evals": args.steps * args.batch_size,
            "path_gradient": args.path_gradient,
            **({"initial_loss_mean_first_10": float(np.mean(history["loss"][:10])),
                "final_loss_mean_last_100": float(np.mean(history["loss"][-100:])),
                "final_ess_fraction_mean_last_100": float(np.mean(history["ess_fraction"][-100:])),
                "ess_fraction_vs_step": ess_curve(history["ess_fraction"])}
               if args.steps > 0 else {}),
        },
        "reweighting": reweighted,
        **{name: r for name, (r, _, _) in runs.items()},
        "flow_imh_vs_" + mc: comparison,
    }
    if args.ensemble == "tutorial" and args.L == 8:
        results["tutorial_chi2"] = {
            "reference": {"value": TUTORIAL_CHI2[0], "stderr": TUTORIAL_CHI2[1]},
            **{n: runs[n][0]["chi2"] for n in runs},
            "reweighted": reweighted["chi2"],
        }
    write_json(args.out / "results.json", results)
    figures(args.out, history, runs, args.L)
    print(f"{args.ensemble}: L={args.L} m2={args.m2} lam={args.lam} z2={z2} "
          f"train {train_time:.0f}s, {weights_text(reweighted)}")
    for n, r in [*((n, r) for n, (r, _, _) in runs.items()), ("reweighted", reweighted)]:
        acc = f"acc {r['acceptance_rate']:.3f}  " if "acceptance_rate" in r else ""
        tau_m = f"  tau(|M|) {r['tau_int']['abs_M']['tau']:.2f}" if "tau_int" in r else ""
        print(f"  {n}: {acc}<|M|> {r['abs_M']['value']:.4f}  chi2 {r['chi2']['value']:.4f} ± "
              f"{r['chi2']['stderr']:.4f}{tau_m}")
    return results


if __name__ == "__main__":
    main()
