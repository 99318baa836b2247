"""A Boltzmann generator for alanine dipeptide in vacuum (Amber ff99SB-ILDN, 300 K), trained
by maximum likelihood on reference MD (forward KL) and data-free (reverse KL; FAB with its
replay buffer), each reweighted exactly.

The molecule is built here (no download): topology, Z-matrix structure, OpenMM minimisation.
Reference: replica-exchange Langevin MD by OpenMM (physgen.targets.langevin_md; replicas at
--replica-temperatures so that the trajectory at 300 K crosses to phi > 0). Model: a
coupling flow on the 3N-6 = 60 internal coordinates (physgen.bijections.InternalCoordinates):
bonds and angles mapped by rational-quadratic spline couplings, the 19 torsions by circular
spline couplings (physgen.bijections.CircularSplineTransformer), every conditioner reading
the torsions as (cos, sin); base N(0, 1) on bonds and angles, uniform on the torsions. The
flow acts on standardised coordinates u, z = loc + scale·u (torsions unchanged): with data,
the MD's mean and standard deviation; data-free, the energy minimum and its Laplace widths.
Its target is the density of u (physgen.targets.Pullback of
physgen.targets.InternalCoordinateTarget: the JAX port of the force field plus the Jacobian
to positions modulo rigid motions), so FAB's HMC moves every coordinate on one scale.
Weights ``log w = log p̃(z) - log q(z)``.

Reported per objective: the mean log-weights under the flow and under held-out MD (they
bracket log Z), training and held-out NLL, ESS and k̂, the population of the right half of
the Ramachandran plane (phi > 0, the C7ax/alpha_L side) and ΔF = -log(p(phi > 0)/p(phi < 0))
from MD (Geyer MCSE of the time series) and from the reweighted flow (delta method), KL(phi)
and KL(psi) of the flow and of the reweighted flow against MD (100 bins on [-π, π), beside
the value between the two halves of the MD, the histograms' own noise), the W2 of (phi, psi)
on the torus, energy evaluations and wall times.

Writes results.json and ramachandran.png (MD; per objective the flow and the reweighted
flow) to --out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import equinox as eqx
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
from physgen.objectives import FAB, MaximumLikelihood, ReverseKL  # noqa: E402
from physgen.targets import (  # noqa: E402
    ForceField,
    InternalCoordinateTarget,
    Pullback,
    alanine_dipeptide,
    langevin_md,
)

FULL = dict(md_samples=20_000, md_interval=100, md_equilibration=20_000, layers=4, width=128,
            bins=8, steps=5000, batch_size=256, lr=1e-3, weighted=20_000, fab_intermediate=4,
            buffer=16_384)
QUICK = dict(md_samples=400, md_interval=20, md_equilibration=500, layers=1, width=16,
             bins=4, steps=20, batch_size=64, lr=1e-3, weighted=256, fab_intermediate=1,
             buffer=0)
# a geometric ladder (ratio 1.2): neighbouring replicas swap about half the time
REPLICAS = dict(full=[360.0, 432.0, 518.0, 622.0], quick=[360.0])
OBJECTIVES = ("forward_kl", "reverse_kl", "fab")
NOTES = dict(buffer="FAB's replay buffer size; 0: FAB without buffer",
             fab_intermediate="FAB's AIS intermediate densities")


def parse_args(argv=None):
    p = script_parser(__doc__, "results/alanine_dipeptide")
    for name, value in FULL.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None,
                       help=f"{NOTES.get(name, '')}{'; ' if name in NOTES else ''}default "
                            f"{value} ({QUICK[name]} with --quick)")
    p.add_argument("--temperature", type=float, default=300.0, help="kelvin")
    p.add_argument("--replica-temperatures", type=float, nargs="*", default=None,
                   help=f"hotter replicas of the replica-exchange MD, kelvin (default "
                        f"{REPLICAS['full']}, {REPLICAS['quick']} with --quick; none: one "
                        f"Langevin trajectory)")
    p.add_argument("--objectives", nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES),
                   help="forward_kl: maximum likelihood on the MD; reverse_kl and fab: "
                        "data-free, against the force field")
    args = p.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.replica_temperatures is None:
        args.replica_temperatures = REPLICAS["quick" if args.quick else "full"]
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


def standardisation(z_train, z_min, target, angles):
    """The map ``z = loc + scale · u`` from the flow's coordinates ``u`` to internal ones
    (torsions unchanged). With MD data (``z_train``): the data's mean and standard deviation.
    Data-free: the minimum ``z_min`` and the Laplace widths ``(∂²E/∂z_i²)^(-1/2)`` there (E in
    kT; each bond's and angle's harmonic width with the other coordinates held)."""
    if z_train is not None:
        loc, scale = z_train.mean(0), z_train.std(0)
    else:
        curvature = np.asarray(jnp.diag(jax.hessian(target.energy)(jnp.asarray(z_min))))
        if np.any(curvature[~angles] <= 0):
            raise ValueError("the structure is not a minimum: a bond or angle has curvature "
                             f"<= 0 ({np.flatnonzero(curvature[~angles] <= 0)})")
        loc, scale = z_min, 1.0 / np.sqrt(np.where(angles, 1.0, curvature))
    return pb.Affine(np.where(angles, 0.0, loc).astype(np.float32),
                     np.where(angles, 1.0, scale).astype(np.float32))


def train_objective(name, key, flow, u_target, u_train, args):
    """Train ``flow`` on ``u`` by ``name``; returns ``(flow, history, energy evaluations)``."""
    if name == "forward_kl":
        flow, history = train(key, flow, MaximumLikelihood(), args, steps=args.steps,
                              lr=args.lr, data=jnp.asarray(u_train))
        return flow, history, 0
    if name == "reverse_kl":
        flow, history = train(key, flow, ReverseKL(u_target, args.batch_size), args,
                              steps=args.steps, lr=args.lr)
        return flow, history, args.steps * args.batch_size
    fab = FAB(u_target, args.batch_size, num_intermediate=args.fab_intermediate,
              buffer_size=args.buffer or None)
    flow, history = train(key, flow, fab, args, steps=args.steps, lr=args.lr)
    return flow, history, int(history["cumulative_energy_evals"][-1])


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
                           interval=args.md_interval, equilibration=args.md_equilibration,
                           replica_temperatures=args.replica_temperatures)
    to_internal = jax.jit(jax.vmap(lambda x: ic.inverse(ic.from_positions(x))))
    z = np.asarray(to_internal(jnp.asarray(traj.positions, jnp.float32)))
    z_min = np.asarray(to_internal(jnp.asarray(molecule.positions[None], jnp.float32)))[0]
    n_train = len(z) * 4 // 5  # the last fifth (later in time) is held out
    rows = {int(a): i for i, a in enumerate(ic.atoms)}
    t0 = ic.torsions.start
    phi_psi = (t0 + rows[14] - 3, t0 + rows[16] - 3)
    md = (z[:, phi_psi[0]], z[:, phi_psi[1]])
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "md": {"samples": len(z), "mean_reduced_energy": float(traj.reduced_energies.mean()),
               "p_phi_positive": float(np.mean(md[0] > 0)), "time_s": times["md_s"],
               "replica_temperatures": list(traj.replica_temperatures),
               "exchange_acceptance": (None if traj.exchange_acceptance is None
                                       else traj.exchange_acceptance.tolist()),
               "md_steps": (1 + len(traj.replica_temperatures)) * (
                   args.md_equilibration + args.md_samples * args.md_interval)},
        "objectives": {},
    }
    panels = [("MD", md, None)]
    for name in args.objectives:
        flow, angles = coupling_flow(k_flow, ic, args)
        std = standardisation(z[:n_train] if name == "forward_kl" else None, z_min, target,
                              angles)
        u_target = Pullback(target, std)  # flows and FAB's HMC act on well-scaled u
        u_train = np.asarray(jax.vmap(std.inverse)(jnp.asarray(z[:n_train])))
        with timer(times, f"{name}_train_s"):
            flow, history, evals = train_objective(name, k_fit, flow, u_target, u_train, args)
        with timer(times, f"{name}_sample_and_weigh_s"):
            r, zs, w = evaluate(k_sample, k_eval, flow, std, u_target, z, n_train, md,
                                phi_psi, args)
        r.update(train_s=times[f"{name}_train_s"], train_energy_evals=evals,
                 final_loss=float(history["loss"][-1]))
        results["objectives"][name] = r
        panels += [(f"{name}: flow", (zs[:, phi_psi[0]], zs[:, phi_psi[1]]), None),
                   (f"{name}: reweighted", (zs[:, phi_psi[0]], zs[:, phi_psi[1]]), w)]
        print(f"{name}: NLL train {r['nll_train']:.3f}, test {r['nll_test']:.3f}; "
              f"{weights_text(r)}; log Z {r['log_Z']['value']:.3f} ± "
              f"{r['log_Z']['stderr']:.3f} within [{r['mean_log_w_flow']:.3f}, "
              f"{r['mean_log_w_md']:.3f}]; p(φ > 0): MD {results['md']['p_phi_positive']:.4f}, "
              f"reweighted {r['reweighted_p_phi_positive']['value']:.4f} ± "
              f"{r['reweighted_p_phi_positive']['stderr']:.4f}")
        kl = r["torsions"]["kl"]
        print(f"{name}: KL(phi), KL(psi) vs MD: " + "; ".join(
            f"{k} {kl['phi'][k]:.4f}, {kl['psi'][k]:.4f}" for k in ("flow", "reweighted",
                                                                   "md_halves")))
    results["times"] = times
    write_json(out / "results.json", results)
    plot(out / "ramachandran.png", panels)
    return results


# compiled once for all objectives: their flows share one structure
@eqx.filter_jit
def log_q(flow, std, z):
    """``log q(z)`` ``(n,)`` in internal coordinates ``z`` ``(n, 60)`` (nats): the flow's
    density of ``u`` and the standardisation's log-det."""
    u, log_det = jax.vmap(std.inverse_and_log_det)(z)
    return flow.log_prob(u) + log_det


@eqx.filter_jit
def log_weights_at(flow, std, u_target, z):
    """``log w = log p̃(z) - log q(z)`` ``(n,)`` at given ``z`` ``(n, 60)``."""
    u = jax.vmap(std.inverse)(z)
    return jax.vmap(u_target.log_density)(u) - flow.log_prob(u)


@eqx.filter_jit
def sample_and_log_weights(flow, std, u_target, key, n: int):
    """``n`` flow samples in internal coordinates ``(n, 60)`` and their log-weights."""
    us, lq = flow.sample_and_log_prob(key, (n,))
    return jax.vmap(std.transform)(us), jax.vmap(u_target.log_density)(us) - lq


def evaluate(k_sample, k_eval, flow, std, u_target, z, n_train, md, phi_psi, args):
    """NLLs, importance weights and the torsion analysis of one trained flow; returns
    ``(results, flow samples z (n, 60), normalised weights (n,))``."""
    zs, log_w = (np.asarray(a) for a in sample_and_log_weights(flow, std, u_target, k_sample,
                                                                args.weighted))
    # E_q[log w] <= log Z <= E_p[log w]; the gaps are KL(q‖p) and KL(p‖q) (p: held-out MD)
    log_w_md = np.asarray(log_weights_at(flow, std, u_target, jnp.asarray(z[n_train:])))
    finite = np.isfinite(log_w)  # NaN where a sampled angle left (0, π): weight zero
    log_w = np.where(finite, log_w, -np.inf)
    phi_q, psi_q = zs[:, phi_psi[0]], zs[:, phi_psi[1]]
    w = np.asarray(rw.normalised_weights(jnp.asarray(log_w)))
    r = {
        "nll_train": float(-jnp.mean(log_q(flow, std, jnp.asarray(z[:n_train])))),
        "nll_test": float(-jnp.mean(log_q(flow, std, jnp.asarray(z[n_train:])))),
        **weights_dict(jnp.asarray(log_w), "flow weights"),
        "non_finite_weights": int((~finite).sum()),
        "flow_p_phi_positive": float(np.mean(phi_q > 0)),
        "reweighted_p_phi_positive": estimate_dict(
            rw.expectation(jnp.asarray(log_w), jnp.asarray(phi_q > 0, log_w.dtype))),
        # log Z = log ∫exp(-U/kT) dx - log(8π² V), bracketed by the two mean log-weights
        "log_Z": estimate_dict(rw.log_Z(jnp.asarray(log_w))),
        "mean_log_w_flow": float(np.mean(log_w[finite])),
        "mean_log_w_md": float(np.mean(log_w_md[np.isfinite(log_w_md)])),
        "torsions": torsion_analysis(k_eval, md, (phi_q, psi_q), log_w),
    }
    return r, zs, w


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


def plot(path, panels):
    """Ramachandran free-energy surfaces ``-log p(φ, ψ)``: MD, then each objective's flow and
    reweighted flow (a row per objective)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [panels[:1] + panels[1:3]] + [[None] + panels[i:i + 2]
                                         for i in range(3, len(panels), 2)]
    fig, axes = plt.subplots(len(grid), 3, figsize=(10.5, 3.4 * len(grid)), squeeze=False)
    edges = np.linspace(-np.pi, np.pi, 61)
    for ax_row, row in zip(axes, grid, strict=True):
        for ax, panel in zip(ax_row, row + [None] * (3 - len(row)), strict=True):
            if panel is None:
                ax.axis("off")
                continue
            title, (phi, psi), weights = panel
            h, _, _ = np.histogram2d(phi, psi, bins=edges, weights=weights, density=True)
            with np.errstate(divide="ignore"):
                f = -np.log(h.T)
            ax.imshow(f - np.nanmin(f[np.isfinite(f)]), origin="lower", vmax=8,
                      extent=(-np.pi, np.pi, -np.pi, np.pi), cmap="viridis")
            ax.set(title=title, xlabel="φ (rad)", ylabel="ψ (rad)")
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(path.with_suffix(f".{ext}"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
