"""A Boltzmann generator for alanine dipeptide in vacuum (Amber ff99SB-ILDN, 300 K), trained
by maximum likelihood on reference MD (forward KL) and data-free (reverse KL; FAB with its
replay buffer), each reweighted exactly.

The molecule is built here (no download): topology, Z-matrix structure, OpenMM minimisation.
Reference: replica-exchange Langevin MD by OpenMM (physgen.targets.langevin_md; replicas at
--replica-temperatures so that the trajectory at 300 K crosses to phi > 0), saved with its
seed, command and diagnostics as reference_md.npz/.json under --reference-dir and made again
only when missing or made with other settings. Model: a
coupling flow on the 3N-6 = 60 internal coordinates (physgen.bijections.InternalCoordinates):
bonds, angles and the four stereo torsions (below) mapped by rational-quadratic spline
couplings, the other 15 torsions by circular spline couplings
(physgen.bijections.CircularSplineTransformer), every conditioner reading those as
(cos, sin); base N(0, 1) on the real entries, uniform on the circular ones. The flow acts on
standardised coordinates u, z = loc + scale·u (circular torsions unchanged; the stereo
torsions then onto their half circles): with data, the MD's mean and standard deviation;
data-free, the energy minimum and its Laplace widths.
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

Also the E-W2 (kT) of the force-field energies against MD (flow, reweighted; MD half vs half).

Stereo copies: the force field gives the mirror image and every swap of two hydrogens of a
methyl group the same energy, so the density of labelled internal coordinates has 16 equal
copies of the molecule (CA's chirality, the handedness of each methyl's labelled hydrogens).
MD stays in the one it starts in. Every flow here is confined to that copy by its
coordinates: the four torsions whose signs pick the copy map onto their half circles
(physgen.bijections.Interval), so each objective learns, and its log Z measures, one copy (a
flow free to roam puts its samples in all 16, and a data-free one its weight in the wrong
ones). Checked from the samples' positions: the raw and reweighted fractions in MD's copy, the
copies visited, and log Z of MD's copy alone.

Also free-energy profiles F(phi), F(psi) with per-bin errors (MD: batch means of 20 blocks;
reweighted flow: delta method) and how many bins agree with MD within 2 errors.

Writes results.json, ramachandran.png (MD; per objective the flow and the reweighted flow),
energies.png (energy histograms), free_energy.png (the profiles) and each trained flow's
density of the internal coordinates, flow_<objective>.eqx (physgen.save), to --out.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _alanine_analysis import (  # noqa: E402
    energy_analysis,
    free_energy_profiles,
    plot,
    plot_energies,
    plot_free_energy,
    stereo_analysis,
    stereo_signs,
    torsion_analysis,
)
from _alanine_flow import (  # noqa: E402
    STEREO_TORSION_ATOMS,  # noqa: F401 (the tests read it here)
    coordinates,
    coupling_flow,
    energy_at,
    log_q,
    log_weights_at,
    positions_and_energies,
    sample_and_log_weights,
    standardisation,
    to_internal,
)
from _common import (  # noqa: E402
    estimate_dict,
    load_reference,
    machine,
    save_reference,
    script_parser,
    timer,
    train,
    weights_dict,
    weights_text,
    write_json,
)

import physgen  # noqa: E402
import physgen.bijections as pb  # noqa: E402
from physgen import reweighting as rw  # noqa: E402
from physgen.diagnostics import integrated_autocorrelation_time, mean_and_mcse  # noqa: E402
from physgen.distributions import Transformed  # noqa: E402
from physgen.objectives import FAB, MaximumLikelihood, ReverseKL  # noqa: E402
from physgen.samplers import HMC  # noqa: E402
from physgen.targets import (  # noqa: E402
    ForceField,
    InternalCoordinateTarget,
    LinLogCut,
    Pullback,
    Trajectory,
    alanine_dipeptide,
    langevin_md,
)

FULL = dict(md_samples=400_000, md_interval=25, md_equilibration=20_000, layers=4, width=64,
            bins=8, steps=20_000, batch_size=256, lr=1e-3, weighted=80_000, fab_steps=1000,
            fab_intermediate=4, fab_mcmc_steps=1, fab_leapfrog=5, buffer=16_384,
            energy_high=1000.0)
QUICK = dict(md_samples=400, md_interval=20, md_equilibration=500, layers=1, width=16,
             bins=4, steps=20, batch_size=64, lr=1e-3, weighted=256, fab_steps=10,
             fab_intermediate=1, fab_mcmc_steps=1, fab_leapfrog=5, buffer=0,
             energy_high=1000.0)
# a geometric ladder (ratio 1.2): neighbouring replicas swap about half the time. It reaches
# 1290 K because phi crosses its barrier only when hot (one Langevin ns: no crossing at 622 K,
# 22 at 900 K, 61 at 1200 K); the 300 K indicator of phi > 0 has tau_int ~ 3,900 frames with
# the ladder cut at 622 K and ~ 120 with this one
REPLICAS = dict(full=[360.0, 432.0, 518.0, 622.0, 746.0, 896.0, 1075.0, 1290.0],
                quick=[360.0])
OBJECTIVES = ("forward_kl", "reverse_kl", "fab")
NOTES = dict(buffer="FAB's replay buffer size; 0: FAB without buffer",
             weighted="flow samples drawn and weighed per objective (a reweighted "
                      "histogram's KL to MD is biased up by about (bins - 1)/(2 ESS))",
             fab_intermediate="FAB's AIS intermediate densities",
             fab_mcmc_steps="HMC steps per AIS intermediate density",
             fab_leapfrog="leapfrog steps per HMC step of FAB's AIS",
             fab_steps="FAB's training steps (an AIS run every 4)",
             energy_high="data-free training: energies more than this above the minimum's "
                         "(kT) grow logarithmically (targets.LinLogCut)")


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
    p.add_argument("--reference-dir", type=Path, default=None,
                   help="where the reference MD, reference_md.npz/.json, is kept (default: "
                        "--out); made when missing or made with other settings")
    p.add_argument("--objectives", nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES),
                   help="forward_kl: maximum likelihood on the MD; reverse_kl and fab: "
                        "data-free, against the force field")
    args = p.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.replica_temperatures is None:
        args.replica_temperatures = REPLICAS["quick" if args.quick else "full"]
    args.reference_dir = Path(args.reference_dir or args.out)
    return args


def reference_md(key, molecule, phi_of, args) -> tuple[Trajectory, dict]:
    """The replica-exchange MD at ``--temperature`` and its record: loaded from
    ``reference_md[_quick].npz/.json`` under ``--reference-dir`` when the same seed and
    settings made it, else run and saved there with the seed, the command, its wall time and
    diagnostics: the integrated autocorrelation time of the energy and of the indicator of
    φ > 0 (``phi_of(positions) -> (n,)``), whose mean p(φ > 0) is given with its Geyer MCSE
    and with the batch-means error of 20 consecutive blocks."""
    settings = {"md_samples": args.md_samples, "md_interval": args.md_interval,
                "md_equilibration": args.md_equilibration, "temperature": args.temperature,
                "replica_temperatures": [float(t) for t in args.replica_temperatures]}
    stem = args.reference_dir / f"reference_md{'_quick' if args.quick else ''}"
    saved = load_reference(stem, settings, args.seed)
    if saved is not None:
        meta, f = saved
        print(f"reference MD loaded from {stem.with_suffix('.npz')}")
        acc = meta["exchange_acceptance"]
        traj = Trajectory(positions=f["positions"], potential_energies=f["potential_energies"],
                          temperature=args.temperature, timestep=meta["timestep_ps"],
                          interval=args.md_interval, equilibration=args.md_equilibration,
                          replica_temperatures=tuple(settings["replica_temperatures"]),
                          exchange_acceptance=None if acc is None else np.asarray(acc))
        return traj, {**meta, "loaded_from": str(stem.with_suffix(".npz"))}
    t0 = time.perf_counter()
    traj = langevin_md(key, molecule.system, molecule.positions, temperature=args.temperature,
                       n_samples=args.md_samples, interval=args.md_interval,
                       equilibration=args.md_equilibration,
                       replica_temperatures=args.replica_temperatures)
    wall = time.perf_counter() - t0
    positive = (np.asarray(phi_of(traj.positions)) > 0).astype(np.float64)
    p, se = mean_and_mcse(positive)
    blocks = positive[: len(positive) // 20 * 20].reshape(20, -1).mean(1)
    diagnostics = {}
    for name, obs in (("reduced_energy", traj.reduced_energies), ("phi_positive", positive)):
        tau = integrated_autocorrelation_time(obs)
        diagnostics[name] = {"tau_int_frames": tau.tau, "tau_int_stderr": tau.error}
    command = ("python experiments/alanine_dipeptide.py" + (" --quick" if args.quick else "")
               + f" --seed {args.seed} --md-samples {args.md_samples} --md-interval "
               f"{args.md_interval} --md-equilibration {args.md_equilibration} --temperature "
               f"{args.temperature} --replica-temperatures "
               + " ".join(f"{t:g}" for t in args.replica_temperatures))
    meta = {"seed": args.seed, "command": command, "settings": settings,
            "integrator": "OpenMM LangevinMiddleIntegrator, friction 1/ps, Reference platform",
            "timestep_ps": traj.timestep, "wall_time_s": wall,
            "md_steps": (1 + len(traj.replica_temperatures)) * (
                args.md_equilibration + args.md_samples * args.md_interval),
            "exchange_acceptance": (None if traj.exchange_acceptance is None
                                    else traj.exchange_acceptance.tolist()),
            "p_phi_positive": {"value": float(p), "stderr_geyer": float(se),
                               "stderr_20_blocks": float(blocks.std(ddof=1) / np.sqrt(20))},
            "diagnostics": diagnostics}
    save_reference(stem, meta, positions=traj.positions.astype(np.float32),
                   potential_energies=traj.potential_energies)
    return traj, {**meta, "loaded_from": None}


def fab_objective(target, args) -> FAB:
    """FAB on ``target`` as the command line sets it: ``--batch-size`` AIS chains through
    ``--fab-intermediate`` densities, ``--fab-mcmc-steps`` HMC steps of ``--fab-leapfrog``
    leapfrog steps at each (step size from 0.1, adapted), the replay buffer ``--buffer``."""
    return FAB(target, args.batch_size, num_intermediate=args.fab_intermediate,
               transition=HMC(0.1, args.fab_leapfrog, adapt=False),
               num_mcmc_steps=args.fab_mcmc_steps, buffer_size=args.buffer or None)


def train_objective(name, key, flow, u_target, u_train, u_min, args):
    """Train ``flow`` on ``u`` by ``name``; returns ``(flow, history, energy evaluations)``.
    Data-free training sees the energy softened above ``--energy-high`` over that of the
    minimum ``u_min``: the initial flow's uniform torsions clash."""
    if name == "forward_kl":
        flow, history = train(key, flow, MaximumLikelihood(), args, steps=args.steps,
                              lr=args.lr, data=u_train)
        return flow, history, 0
    e_min = float(energy_at(u_target, jnp.asarray(u_min)))
    soft = LinLogCut(u_target, e_min + args.energy_high, e_min + 1e30)
    if name == "reverse_kl":
        flow, history = train(key, flow, ReverseKL(soft, args.batch_size), args,
                              steps=args.steps, lr=args.lr)
        return flow, history, args.steps * args.batch_size
    flow, history = train(key, flow, fab_objective(soft, args), args, steps=args.fab_steps,
                          lr=args.lr)
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
    to_z = to_internal(ic)
    rows = {int(a): i for i, a in enumerate(ic.atoms)}
    t0 = ic.torsions.start
    phi_psi = (t0 + rows[14] - 3, t0 + rows[16] - 3)
    traj, reference = reference_md(
        k_md, molecule,
        lambda x: to_z(jnp.asarray(x, jnp.float32))[:, phi_psi[0]], args)
    times["md_s"] = reference["wall_time_s"]
    z = np.asarray(to_z(jnp.asarray(traj.positions, jnp.float32)))
    z_min = np.asarray(to_z(jnp.asarray(molecule.positions[None], jnp.float32)))[0]
    n_train = len(z) * 4 // 5  # the last fifth (later in time) is held out
    md = (z[:, phi_psi[0]], z[:, phi_psi[1]])
    patterns, counts = np.unique(stereo_signs(traj.positions), axis=0, return_counts=True)
    md_copy = patterns[np.argmax(counts)]
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "md": {"samples": len(z), "mean_reduced_energy": float(traj.reduced_energies.mean()),
               "p_phi_positive": float(np.mean(md[0] > 0)), "time_s": times["md_s"],
               "replica_temperatures": list(traj.replica_temperatures),
               "exchange_acceptance": reference["exchange_acceptance"],
               "md_steps": reference["md_steps"], "reference": reference,
               "stereo_copy": {"signs": md_copy.tolist(),
                               "fraction_of_frames": float(counts.max() / counts.sum())}},
        "objectives": {},
    }
    panels = [("MD", md, None)]
    energies, stds, profiles = {}, {}, {}  # the data-free objectives share a standardisation
    angles, low, high = coordinates(ic, z_min)  # every flow lives in the minimum's copy
    for name in args.objectives:
        flow = coupling_flow(k_flow, angles, args.layers, args.bins, args.width)
        kind = "data" if name == "forward_kl" else "data-free"
        if kind not in stds:
            stds[kind] = standardisation(z[:n_train] if kind == "data" else None, z_min, target,
                                         angles, low, high)
        std = stds[kind]
        u_target = Pullback(target, std)  # flows and FAB's HMC act on well-scaled u
        u_train = (jax.vmap(std.inverse)(jnp.asarray(z[:n_train])) if kind == "data"
                   else None)  # what forward KL trains on
        u_min = std.inverse(jnp.asarray(z_min))
        with timer(times, f"{name}_train_s"):
            flow, history, evals = train_objective(name, k_fit, flow, u_target, u_train, u_min,
                                                   args)
        physgen.save(out / f"flow_{name}.eqx", Transformed(flow, std), metadata={
            "objective": name, "seed": args.seed, "layers": args.layers, "bins": args.bins,
            "width": args.width, "density": "of the 60 internal coordinates z (bonds nm, "
            "angles and torsions rad) of ALANINE_DIPEPTIDE_ZMATRIX, confined to MD's stereo "
            "copy; its structure: Transformed(coupling_flow(...), standardisation(...)) of "
            "experiments/_alanine_flow.py"})
        with timer(times, f"{name}_sample_and_weigh_s"):
            r, torsions_q, w, e_q = evaluate(k_sample, k_eval, flow, std, u_target, z,
                                             n_train, md, phi_psi, traj.reduced_energies,
                                             md_copy, args)
        r.update(train_s=times[f"{name}_train_s"], train_energy_evals=evals,
                 final_loss=float(history["loss"][-1]))
        results["objectives"][name] = r
        panels += [(f"{name}: flow", torsions_q, None),
                   (f"{name}: reweighted", torsions_q, w)]
        energies[name] = (e_q, w)
        profiles[name] = r["free_energy"]
        print(f"{name}: NLL train {r['nll_train']:.3f}, test {r['nll_test']:.3f}; "
              f"{weights_text(r)}; log Z {r['log_Z']['value']:.3f} ± "
              f"{r['log_Z']['stderr']:.3f} within [{r['mean_log_w_flow']:.3f}, "
              f"{r['mean_log_w_md']:.3f}]; p(φ > 0): MD {results['md']['p_phi_positive']:.4f}, "
              f"reweighted {r['reweighted_p_phi_positive']['value']:.4f} ± "
              f"{r['reweighted_p_phi_positive']['stderr']:.4f}")
        sc = r["stereo_copies"]
        print(f"{name}: in MD's stereo copy: {sc['flow_fraction_in_md_copy']:.4f} of the "
              f"samples, {sc['reweighted_mass_in_md_copy']['value']:.4f} of the weight; "
              f"{len(sc['flow_fraction_per_copy'])} copies visited")
        fe = r["free_energy"]
        print(f"{name}: F(phi), F(psi) reweighted vs MD: largest |z| "
              f"{fe['phi']['reweighted_vs_md']['max_abs_z']:.1f}, "
              f"{fe['psi']['reweighted_vs_md']['max_abs_z']:.1f}; bins within 2 se "
              f"{fe['phi']['reweighted_vs_md']['fraction_within_2_se']:.2f}, "
              f"{fe['psi']['reweighted_vs_md']['fraction_within_2_se']:.2f}")
        kl = r["torsions"]["kl"]
        print(f"{name}: KL(phi), KL(psi) vs MD: " + "; ".join(
            f"{k} {kl['phi'][k]:.4f}, {kl['psi'][k]:.4f}" for k in ("flow", "reweighted",
                                                                   "md_halves")))
    results["times"] = times
    write_json(out / "results.json", results)
    plot(out / "ramachandran.png", panels)
    plot_energies(out / "energies.png", traj.reduced_energies, energies)
    plot_free_energy(out / "free_energy.png", profiles)
    return results


def evaluate(k_sample, k_eval, flow, std, u_target, z, n_train, md, phi_psi, e_md, md_copy,
             args):
    """NLLs, importance weights, the torsion, energy and stereo-copy analyses of one trained
    flow; returns ``(results, (phi, psi) of the flow's samples (n,) each, normalised weights
    (n,), reduced energies (n,))``."""
    zs, log_w = (np.asarray(a) for a in sample_and_log_weights(flow, std, u_target, k_sample,
                                                                args.weighted))
    x_q, e_q = positions_and_energies(u_target.target, jnp.asarray(zs))
    e_q = np.asarray(e_q, np.float64)
    # E_q[log w] <= log Z <= E_p[log w]; the gaps are KL(q‖p) and KL(p‖q) (p: held-out MD)
    log_w_md = np.asarray(log_weights_at(flow, std, u_target, jnp.asarray(z[n_train:])))
    finite = np.isfinite(log_w)  # NaN where a sampled angle left (0, π): weight zero
    log_w = np.where(finite, log_w, -np.inf)
    phi_q, psi_q = zs[:, list(phi_psi)].T
    w = np.asarray(rw.normalised_weights(jnp.asarray(log_w)))
    lq = np.asarray(log_q(flow, std, jnp.asarray(z)))  # one call (one compilation) for both
    r = {
        "nll_train": float(-np.mean(lq[:n_train])),
        "nll_test": float(-np.mean(lq[n_train:])),
        **weights_dict(jnp.asarray(log_w), "flow weights"),
        "non_finite_weights": int((~finite).sum()),
        "flow_p_phi_positive": {  # independent draws: the binomial error
            "value": float(np.mean(phi_q > 0)),
            "stderr": float(np.sqrt(np.mean(phi_q > 0) * np.mean(phi_q <= 0) / len(phi_q)))},
        "reweighted_p_phi_positive": estimate_dict(
            rw.expectation(jnp.asarray(log_w), jnp.asarray(phi_q > 0, log_w.dtype))),
        # log Z = log ∫exp(-U/kT) dx - log(8π² V) over MD's stereo copy (the flows' support),
        # bracketed by the two mean log-weights
        "log_Z": estimate_dict(rw.log_Z(jnp.asarray(log_w))),
        "mean_log_w_flow": float(np.mean(log_w[finite])),
        "mean_log_w_md": float(np.mean(log_w_md[np.isfinite(log_w_md)])),
        "torsions": torsion_analysis(k_eval, md, (phi_q, psi_q), log_w),
        "free_energy": free_energy_profiles(md, (phi_q, psi_q), log_w),
        "energies": energy_analysis(jax.random.fold_in(k_eval, 1), e_md, e_q, log_w),
        "stereo_copies": stereo_analysis(md_copy, stereo_signs(x_q), log_w),
    }
    return r, (phi_q, psi_q), w, e_q


if __name__ == "__main__":
    main()
