"""A Boltzmann generator for alanine dipeptide in vacuum (Amber ff99SB-ILDN, 300 K), trained
by maximum likelihood (forward KL) on reference MD and reweighted exactly.

The molecule is built here (no download): topology, Z-matrix structure, OpenMM minimisation.
Reference: Langevin MD by OpenMM (physgen.targets.langevin_md). Model: a coupling flow on the
3N-6 = 60 internal coordinates (physgen.bijections.InternalCoordinates): bonds and angles
standardised by the MD statistics and mapped by rational-quadratic spline couplings, the 19
torsions by circular spline couplings (physgen.bijections.CircularSplineTransformer), every
conditioner reading the torsions as (cos, sin); base N(0, 1) on bonds and angles, uniform on
the torsions. Weights ``log w = log p̃(z) - log q(z)`` with the density of the internal
coordinates (physgen.targets.InternalCoordinateTarget: the JAX port of the force field plus
the Jacobian to positions modulo rigid motions). Reported: the mean log-weights under the
flow and under held-out MD (they bracket log Z), training and held-out NLL, ESS and k̂, the
population of the right half of the Ramachandran plane (phi > 0, the C7ax/alpha_L side) and
ΔF = -log(p(phi > 0)/p(phi < 0)) from MD (Geyer MCSE of the time series) and from the
reweighted flow (delta method), KL(phi) and KL(psi) of the flow and of the reweighted flow
against MD (100 bins on [-π, π), beside the value between the two halves of the MD, the
histograms' own noise), the W2 of (phi, psi) on the torus, and wall times.

Writes results.json and ramachandran.png (MD, flow, reweighted flow) to --out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    estimate_dict,
    machine,
    script_parser,
    timer,
    train,
    weights_dict,
    weights_text,
    write_json,
)

import physgen.bijections as pb  # noqa: E402
from physgen import reweighting as rw  # noqa: E402
from physgen.diagnostics import mean_and_mcse  # noqa: E402
from physgen.distributions import NormalWithAngles, Transformed  # noqa: E402
from physgen.metrics import histogram_kl, resample_indices, sample_w2  # noqa: E402
from physgen.objectives import MaximumLikelihood  # noqa: E402
from physgen.targets import (  # noqa: E402
    ForceField,
    InternalCoordinateTarget,
    alanine_dipeptide,
    langevin_md,
)

FULL = dict(md_samples=20_000, md_interval=100, md_equilibration=20_000, layers=4, width=128,
            bins=8, steps=5000, batch_size=256, lr=1e-3, weighted=20_000)
QUICK = dict(md_samples=400, md_interval=20, md_equilibration=500, layers=1, width=16,
             bins=4, steps=20, batch_size=64, lr=1e-3, weighted=256)


def parse_args(argv=None):
    p = script_parser(__doc__, "results/alanine_dipeptide")
    for name, value in FULL.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None,
                       help=f"default {value} ({QUICK[name]} with --quick)")
    p.add_argument("--temperature", type=float, default=300.0, help="kelvin")
    args = p.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def coupling_flow(key, ic, args):
    """Per layer: a spline coupling on half the bonds and angles, then a circular spline
    coupling on half the torsions (alternating halves), each conditioned on all the rest."""
    dim = ic.shape[0]
    angles = np.zeros(dim, bool)
    angles[ic.torsions] = True
    real, torsion = np.flatnonzero(~angles), np.flatnonzero(angles)
    layers = []
    for i, k in enumerate(jax.random.split(key, 2 * args.layers)):
        parity = (i // 2) % 2
        if i % 2 == 0:
            moved, transformer = real[parity::2], pb.SplineTransformer(args.bins, 5.0)
        else:
            moved, transformer = torsion[parity::2], pb.CircularSplineTransformer(args.bins)
        keep = np.ones(dim, bool)
        keep[moved] = False
        partition = pb.FlatPartition(dim, mask=keep)
        conditioner = pb.MLPConditioner(partition, transformer, key=k, width=args.width,
                                        depth=2, circular=angles)
        layers.append(pb.Coupling(partition, transformer, conditioner))
    return Transformed(NormalWithAngles((dim,), angles), pb.Chain(layers)), angles


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(args.seed)
    k_md, k_flow, k_fit, k_sample, k_eval = jax.random.split(key, 5)
    times: dict[str, float] = {}

    molecule = alanine_dipeptide()
    ic = pb.InternalCoordinates(molecule.zmatrix)
    # the Boltzmann density of the internal coordinates (the Jacobian to positions included)
    target = InternalCoordinateTarget(ForceField(molecule.system, temperature=args.temperature),
                                      ic)
    with timer(times, "md_s"):
        traj = langevin_md(k_md, molecule.system, molecule.positions,
                           temperature=args.temperature, n_samples=args.md_samples,
                           interval=args.md_interval, equilibration=args.md_equilibration)
    to_internal = jax.jit(jax.vmap(lambda x: ic.inverse(ic.from_positions(x))))
    z = np.asarray(to_internal(jnp.asarray(traj.positions, jnp.float32)))
    n_train = len(z) * 4 // 5  # the last fifth (later in time) is held out
    flow, angles = coupling_flow(k_flow, ic, args)
    # bonds and angles standardised by the training data; torsions stay angles
    loc = np.where(angles, 0.0, z[:n_train].mean(0)).astype(np.float32)
    scale = np.where(angles, 1.0, z[:n_train].std(0)).astype(np.float32)
    log_scale = float(np.log(scale).sum())

    def standardise(v):
        return (v - loc) / scale

    with timer(times, "train_s"):
        flow, history = train(k_fit, flow, MaximumLikelihood(), args, steps=args.steps,
                              lr=args.lr, data=jnp.asarray(standardise(z[:n_train])))

    def nll(v):  # -log q(z) in internal coordinates (nats)
        return float(-jnp.mean(flow.log_prob(jnp.asarray(standardise(v)))) + log_scale)

    @jax.jit
    def weigh(k):  # flow samples in internal coordinates and log w = log p̃(z) - log q(z)
        s, log_q = flow.sample_and_log_prob(k, (args.weighted,))
        zs = s * scale + loc
        return zs, jax.vmap(target.log_density)(zs) - (log_q - log_scale)

    @jax.jit
    def log_w_at(v):
        return jax.vmap(target.log_density)(v) - (flow.log_prob(standardise(v)) - log_scale)

    with timer(times, "sample_and_weigh_s"):
        zs, log_w = weigh(k_sample)
        zs, log_w = np.asarray(zs), np.asarray(log_w)
    # E_q[log w] <= log Z <= E_p[log w]; the gaps are KL(q‖p) and KL(p‖q) (p: held-out MD)
    log_w_md = np.asarray(log_w_at(jnp.asarray(z[n_train:])))
    finite = np.isfinite(log_w)  # NaN where a sampled angle left (0, π): weight zero
    log_w = np.where(finite, log_w, -np.inf)
    rows = {int(a): i for i, a in enumerate(ic.atoms)}
    t0 = ic.torsions.start
    phi_md, psi_md = z[:, t0 + rows[14] - 3], z[:, t0 + rows[16] - 3]
    phi_q, psi_q = zs[:, t0 + rows[14] - 3], zs[:, t0 + rows[16] - 3]
    w = np.asarray(rw.normalised_weights(jnp.asarray(log_w)))
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "times": times,
        "md": {"samples": len(z), "mean_reduced_energy": float(traj.reduced_energies.mean()),
               "p_phi_positive": float(np.mean(phi_md > 0))},
        "nll_train": nll(z[:n_train]),
        "nll_test": nll(z[n_train:]),
        "final_loss": float(history["loss"][-1]) if "loss" in history else None,
        **weights_dict(jnp.asarray(log_w), "flow weights"),
        "non_finite_weights": int((~finite).sum()),
        "flow_p_phi_positive": float(np.mean(phi_q > 0)),
        "reweighted_p_phi_positive": estimate_dict(
            rw.expectation(jnp.asarray(log_w), jnp.asarray(phi_q > 0, log_w.dtype))),
        # log Z = log ∫exp(-U/kT) dx - log(8π² V), bracketed by the two mean log-weights
        "log_Z": estimate_dict(rw.log_Z(jnp.asarray(log_w))),
        "mean_log_w_flow": float(np.mean(log_w[finite])),
        "mean_log_w_md": float(np.mean(log_w_md[np.isfinite(log_w_md)])),
        "torsions": torsion_analysis(k_eval, (phi_md, psi_md), (phi_q, psi_q), log_w),
    }
    write_json(out / "results.json", results)
    plot(out / "ramachandran.png", (phi_md, psi_md), (phi_q, psi_q), w)
    print(f"NLL train {results['nll_train']:.3f}, test {results['nll_test']:.3f}; "
          f"{weights_text(results)}; log Z {results['log_Z']['value']:.3f} ± "
          f"{results['log_Z']['stderr']:.3f} within [{results['mean_log_w_flow']:.3f}, "
          f"{results['mean_log_w_md']:.3f}]; p(φ > 0): MD {results['md']['p_phi_positive']:.4f}, "
          f"reweighted {results['reweighted_p_phi_positive']['value']:.4f} ± "
          f"{results['reweighted_p_phi_positive']['stderr']:.4f}")
    kl = results["torsions"]["kl"]
    print("KL(phi), KL(psi) vs MD: " + "; ".join(
        f"{k} {kl['phi'][k]:.4f}, {kl['psi'][k]:.4f}" for k in ("flow", "reweighted",
                                                               "md_halves")))
    return results


def torsion_analysis(key, md, flow, log_w, max_w2: int = 2000) -> dict:
    """ΔF between the halves phi < 0 and phi > 0 of the Ramachandran plane, KL of the phi
    and psi marginals and the torus W2 of (phi, psi), for MD, the flow and the reweighted
    flow (module docstring)."""
    (phi_md, psi_md), (phi_q, psi_q) = md, flow
    lw = jnp.asarray(log_w)
    w = np.asarray(rw.normalised_weights(lw))
    p_md, se_md = mean_and_mcse((phi_md > 0).astype(np.float64))
    dF_md = -np.log(p_md / (1 - p_md)) if 0 < p_md < 1 else float("inf")
    dF_q = rw.free_energy_difference(lw, jnp.asarray(phi_q < 0), jnp.asarray(phi_q > 0))
    half = len(phi_md) // 2
    kl = {}
    for name, a_md, a_q in (("phi", phi_md, phi_q), ("psi", psi_md, psi_q)):
        kl[name] = {"flow": histogram_kl(a_md, a_q), "reweighted": histogram_kl(
                    a_md, a_q, q_weights=w), "md_halves": histogram_kl(a_md[:half],
                                                                       a_md[half:])}
    n = min(max_w2, len(phi_md) // 2, len(phi_q))
    x_md = np.stack([phi_md, psi_md], -1)
    x_q = np.stack([phi_q, psi_q], -1)
    pick = np.asarray(resample_indices(key, lw, n))
    w2 = {"flow": sample_w2(x_md[-n:], x_q[:n], period=2 * np.pi),
          "reweighted": sample_w2(x_md[-n:], x_q[pick], period=2 * np.pi),
          "md_halves": sample_w2(x_md[:n], x_md[-n:], period=2 * np.pi), "samples": n}
    return {
        "delta_F_phi_positive_minus_negative": {
            "md": {"value": float(dF_md), "stderr": float(se_md / (p_md * (1 - p_md)))
                   if 0 < p_md < 1 else float("inf"), "p_phi_positive": float(p_md),
                   "p_stderr": float(se_md), "error": "Geyer MCSE of the MD time series"},
            "reweighted": estimate_dict(dF_q)},
        "kl": kl, "w2_torus": w2,
        "protocol": "KL(MD ‖ model) of phi and psi histograms, 100 bins on [-π, π), 1e-10 "
                    "added per bin; W2 of (phi, psi) on the torus, exact OT between equal "
                    "numbers of samples (reweighted: systematic resampling by the weights)",
    }


def plot(path, md, flow, w):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.4), sharey=True)
    edges = np.linspace(-np.pi, np.pi, 61)
    panels = (("MD", md, None), ("flow", flow, None), ("flow, reweighted", flow, w))
    for ax, (title, (phi, psi), weights) in zip(axes, panels, strict=True):
        h, _, _ = np.histogram2d(phi, psi, bins=edges, weights=weights, density=True)
        with np.errstate(divide="ignore"):
            f = -np.log(h.T)
        ax.imshow(f - np.nanmin(f[np.isfinite(f)]), origin="lower", vmax=8,
                  extent=(-np.pi, np.pi, -np.pi, np.pi), cmap="viridis")
        ax.set_title(title)
        ax.set_xlabel("φ (rad)")
    axes[0].set_ylabel("ψ (rad)")
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(path.with_suffix(f".{ext}"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
