"""The alanine dipeptide experiment's analysis: torsion and energy comparisons with MD, and
its figures (experiments/alanine_dipeptide.py)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from _common import estimate_dict

from physgen import reweighting as rw
from physgen.diagnostics import mean_and_mcse
from physgen.metrics import energy_w2, histogram_kl, resample_indices, sample_w2


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


def plot_energies(path, e_md, energies):
    """Histograms of the reduced energies: MD, and per objective the flow and the flow
    reweighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = np.percentile(e_md, [0.1, 99.9])
    edges = np.linspace(lo - 0.2 * (hi - lo), hi + 0.5 * (hi - lo), 80)
    fig, axes = plt.subplots(1, max(1, len(energies)), figsize=(4 * max(1, len(energies)), 3.2),
                             squeeze=False)
    for ax, (name, (e, w)) in zip(axes[0], energies.items(), strict=False):
        shown = (e >= edges[0]) & (e <= edges[-1])
        ax.hist(e_md, edges, density=True, color="0.6", label="MD")
        if shown.any():
            ax.hist(e[shown], edges, density=True, histtype="step", label="flow")
        if w[shown].sum() > 0:  # else all the weight lies outside the MD's energy range
            ax.hist(e[shown], edges, weights=w[shown], density=True, histtype="step",
                    label="reweighted")
        ax.set(title=name, xlabel="U / kT")
        ax.legend(fontsize=7)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(path.with_suffix(f".{ext}"), dpi=120)
    plt.close(fig)


def energy_analysis(key, e_md, e_q, log_w) -> dict:
    """E-W2 (kT) of the reduced energies against all MD frames: of the flow's samples with a
    finite energy, of the samples resampled by the weights, and between the two halves of
    the MD (its own noise); means of each."""
    ok = np.isfinite(e_q)
    pick = np.asarray(resample_indices(key, jnp.asarray(log_w), len(e_q)))
    half = len(e_md) // 2
    return {
        "e_w2": {"flow": float(energy_w2(e_md, e_q[ok])),
                 "reweighted": float(energy_w2(e_md, e_q[pick])),
                 "md_halves": float(energy_w2(e_md[:half], e_md[half:]))},
        "mean": {"md": float(np.mean(e_md)), "flow": float(np.mean(e_q[ok])),
                 "reweighted": float(np.mean(e_q[pick]))},
        "non_finite_flow_energies": int((~ok).sum()),
    }


# Alanine dipeptide's stereo-centres (centre, a, b, c): CA (N, C, CB) and the labelled
# hydrogens of the three methyl groups (ACE CH3, CB, NME CH3). The force field gives each
# combination of their handednesses the same energy (mirror symmetry; identical hydrogens), so
# the Boltzmann density of labelled internal coordinates has 16 equal copies of the molecule.
# MD stays in the copy it starts in (changing one means passing a bond through a carbon); the
# flows are confined to it by their coordinates (_alanine_flow.coordinates).
STEREO_CENTRES = {"CA": (8, 6, 14, 10), "ACE CH3": (1, 0, 2, 3), "CB": (10, 11, 12, 13),
                  "NME CH3": (18, 19, 20, 21)}


def stereo_signs(x) -> np.ndarray:
    """The handedness ``sign det[x_a - x_c, x_b - x_c, x_d - x_c]`` of each of
    ``STEREO_CENTRES``, ``(n, 4)`` int, of positions ``x`` ``(n, 22, 3)``."""
    x = np.asarray(x, np.float64)
    c, a, b, d = (np.array(i) for i in zip(*STEREO_CENTRES.values(), strict=True))
    det = np.einsum("nki,nki->nk", np.cross(x[:, a] - x[:, c], x[:, b] - x[:, c]),
                    x[:, d] - x[:, c])
    return np.sign(det).astype(int)


def stereo_analysis(md_copy, signs, log_w) -> dict:
    """How the flow's samples (handedness ``signs`` ``(n, 4)``, log-weights ``(n,)``) spread
    over the stereo copies: the raw and reweighted fractions in MD's copy ``md_copy`` ``(4,)``,
    the copies visited, and log Z of MD's copy alone (weights outside it set to zero) with the
    Kish ESS of the weights it rests on: a check of the flows' confinement to one copy (a
    flow spread over copies estimates log Z of all it covers, up to log 16 above one)."""
    inside = np.all(signs == np.asarray(md_copy), axis=1)
    lw = jnp.asarray(log_w)
    in_copy = jnp.where(jnp.asarray(inside), lw, -jnp.inf)
    copies = {"".join("+" if v > 0 else "-" for v in row): float(np.mean(np.all(
        signs == row, axis=1))) for row in np.unique(signs, axis=0)}
    return {
        "centres": list(STEREO_CENTRES), "md_copy": [int(v) for v in md_copy],
        "flow_fraction_in_md_copy": float(np.mean(inside)),
        "reweighted_mass_in_md_copy": estimate_dict(rw.expectation(
            lw, jnp.asarray(inside, lw.dtype))),
        "flow_fraction_per_copy": copies,
        "log_Z_md_copy": (estimate_dict(rw.log_Z(in_copy)) if inside.any() else None),
        "ess_in_md_copy": float(rw.kish_ess(in_copy)) if inside.any() else 0.0,
    }


def free_energy_profiles(md, flow, log_w, bins: int = 36, blocks: int = 20) -> dict:
    """Free-energy profiles ``F(a) = -log p(bin)`` (kT; ``p`` the probability of each of
    ``bins`` bins of [-π, π)) of phi and psi with per-bin standard errors: MD by batch means
    over ``blocks`` consecutive blocks (its frames are correlated), the raw flow binomial,
    the reweighted flow by the delta method (:func:`physgen.reweighting.expectation`); ``se(F)
    = se(p) / p``. Summary per angle: over the bins the MD visits with p > 1e-3, the
    largest |F_reweighted - F_MD| in units of their combined error and the fraction of bins
    within 2 combined errors."""
    edges = np.linspace(-np.pi, np.pi, bins + 1)
    lw = jnp.asarray(log_w)
    out = {"edges": edges.tolist(), "protocol": (
        f"{bins} bins on [-π, π); MD: batch means of {blocks} consecutive blocks; flow: "
        "binomial; reweighted: delta method; se(F) = se(p)/p")}
    for name, a_md, a_q in (("phi", md[0], flow[0]), ("psi", md[1], flow[1])):
        one_hot_md = np.eye(bins)[np.clip(np.digitize(a_md, edges) - 1, 0, bins - 1)]
        one_hot_q = np.eye(bins)[np.clip(np.digitize(a_q, edges) - 1, 0, bins - 1)]
        n_blocks = len(a_md) // blocks * blocks
        block_p = one_hot_md[:n_blocks].reshape(blocks, -1, bins).mean(1)
        p = {"md": (one_hot_md.mean(0), block_p.std(0, ddof=1) / np.sqrt(blocks))}
        pq = one_hot_q.mean(0)
        p["flow"] = (pq, np.sqrt(pq * (1 - pq) / len(a_q)))
        est = rw.expectation(lw, jnp.asarray(one_hot_q, lw.dtype))
        p["reweighted"] = (np.asarray(est.value, np.float64), np.asarray(est.stderr, np.float64))
        prof = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for k, (v, se) in p.items():
                prof[k] = {"F": np.where(v > 0, -np.log(v), np.inf),
                           "se": np.where(v > 0, se / v, np.inf)}
        seen = p["md"][0] > 1e-3
        f_rw, f_md = prof["reweighted"]["F"][seen], prof["md"]["F"][seen]
        err = np.hypot(prof["reweighted"]["se"][seen], prof["md"]["se"][seen])
        with np.errstate(invalid="ignore"):  # a bin the weights leave empty: |z| = inf
            z = np.where(np.isfinite(f_rw), np.abs(f_rw - f_md) / err, np.inf)
        out[name] = {k: {"F": [None if not np.isfinite(f) else float(f) for f in d["F"]],
                         "se": [None if not np.isfinite(s) else float(s) for s in d["se"]]}
                     for k, d in prof.items()}
        out[name]["reweighted_vs_md"] = {
            "max_abs_z": float(np.nanmax(np.where(np.isfinite(z), z, np.inf))) if len(z)
            else None, "fraction_within_2_se": float(np.mean(z <= 2)),
            "bins_compared": int(seen.sum())}
    return out


def plot_free_energy(path, profiles):
    """``F(phi)`` and ``F(psi)`` with error bars: MD, and per objective the flow and the
    reweighted flow (``profiles``: objective -> :func:`free_energy_profiles`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(profiles), 2, figsize=(9, 3.0 * len(profiles)), squeeze=False)
    for row, (objective, prof) in zip(axes, profiles.items(), strict=True):
        edges = np.asarray(prof["edges"])
        mid = 0.5 * (edges[1:] + edges[:-1])
        for ax, angle in zip(row, ("phi", "psi"), strict=True):
            for kind, style in (("md", "k-"), ("flow", "C0--"), ("reweighted", "C1-")):
                f = np.array([np.nan if v is None else v for v in prof[angle][kind]["F"]])
                se = np.array([np.nan if v is None else v for v in prof[angle][kind]["se"]])
                ax.errorbar(mid, f, yerr=se, fmt=style, capsize=2, lw=1, ms=2,
                            label="MD" if kind == "md" else kind)
            ax.set(title=f"{objective}: F({angle})", xlabel=f"{angle} (rad)", ylabel="F / kT",
                   ylim=(0, 14))
            ax.legend(fontsize=7)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(path.with_suffix(f".{ext}"), dpi=120)
    plt.close(fig)
