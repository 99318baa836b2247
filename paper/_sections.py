"""What the paper takes from each experiment's results.json: its LaTeX tables
(``name -> tex``) and the numbers quoted in the text (``macro -> text``)."""

from __future__ import annotations

from _tex import _get, integer, num, pm, tabular, tex_escape


def _double_well_numbers(r: dict) -> dict[str, str]:
    bg, hmc = r["boltzmann_generator"], r["hmc"]
    d, lz = bg["delta_F_B_minus_A_kT"], bg["log_Z"]
    return {
        "DWess": num(bg["ess_fraction"], 3),
        "DWtrainEvals": integer(bg["num_energy_evals_training"]),
        "DWdF": pm(d["value"], d["stderr"]),
        "DWdFexact": num(d["exact"], 6),
        "DWlogZ": pm(lz["value"], lz["stderr"]),
        "DWlogZexact": num(lz["exact"], 7),
        "DWhmcCrossed": integer(hmc["chains_that_visited_B"]),
        "DWhmcChains": integer(hmc["num_chains"]),
        "DWhmcpB": (pm(hmc["p_B"]["value"], hmc["p_B"]["stderr"])
                    if hmc["p_B"]["stderr"] else num(hmc["p_B"]["value"])),
        "DWpBexact": num(hmc["p_B"]["exact"], 5),
    }


def _toy2d_tables(r: dict) -> dict[str, str]:
    rows = []
    for run in r["runs"]:
        model = run.get("flow") or run.get("model") or run.get("family")
        rows.append([tex_escape(run["dataset"]), tex_escape(model),
                     pm(run["test_nll"]["value"], run["test_nll"]["stderr"]),
                     pm(run["entropy"]["value"], run["entropy"]["stderr"]),
                     pm(run["gap_nll_minus_entropy"]["value"],
                        run["gap_nll_minus_entropy"]["stderr"])])
    return {"toy2d": tabular(["data", "model", "test NLL", "entropy $H$", "NLL $-$ H"], rows,
                             "llrrr")}


def _reach_tables(r: dict) -> tuple[dict[str, str], dict[str, str]]:
    """The evaluations to reach over seeds (median, min–max, seeds not reached) and the
    ratio of the best crossing MCMC method to the best BG method with its bootstrap
    interval, as the benchmark summarised them."""
    entry = _get(r, "targets", "double_well", default={})
    rows = []
    for e in entry.get("reach_over_seeds") or []:
        n = len(e["totals"])
        median = (integer(e["median"]) if e["median"] is not None
                  else rf"\ensuremath{{>}}{integer(e['cap'])}")
        span = f"{integer(e['min'])}--{integer(e['max'])}" if e["min"] is not None else "--"
        train = integer(round(sum(e["train"]) / n)) if any(e["train"]) else "--"
        rows.append([tex_escape(e["label"]), f"{e['reached']}/{n}", median, span, train])
    best = entry.get("best_reach_ratio")
    lo, hi = best["interval_95"] if best else (None, None)
    numbers = {
        "ReachRatio": num(best["median_ratio"], 3) if best else "--",
        "ReachRatioLow": num(lo, 3), "ReachRatioHigh": num(hi, 3),
        "ReachSeeds": integer(best["bg_seeds"]) if best else "--",
        "ReachMcmcSeeds": integer(best["mcmc_seeds"]) if best else "--",
        "ReachMcmc": tex_escape(best["mcmc"]) if best else "--",
        "ReachBG": tex_escape(best["bg"]) if best else "--",
    }
    tables = {"ess_reach": tabular(
        ["method", "seeds reached", "median", "min--max", "training"], rows)}
    return tables, numbers


def _ess_tables(r):
    return _reach_tables(r)[0]


def _ess_numbers(r):
    return _reach_tables(r)[1]


def _flowjax_tables(r: dict) -> dict[str, str]:
    rows = []
    for row in r["rows"]:
        p, f = row["physgen"], row["flowjax"]
        rows.append([tex_escape(row["flow"]), str(row["dim"]), integer(p["num_params"]),
                     num(p["train_step_s"] * 1e3, 3), num(f["train_step_s"] * 1e3, 3),
                     num(row["train_step_ratio_flowjax_over_physgen"], 3),
                     num(p["samples_per_s"], 3), num(f["samples_per_s"], 3),
                     num(row["sampling_ratio_flowjax_over_physgen"], 3)])
    return {"vs_flowjax": tabular(
        ["flow", "dim", "params", "step (ms) physgen", "step (ms) FlowJAX", "ratio",
         "samples/s physgen", "samples/s FlowJAX", "ratio"], rows)}


def _families_tables(r: dict) -> dict[str, str]:
    rows = []
    for run in r["runs"]:
        nll = run.get("test_nll") or {}
        if "exact" in nll:
            lik = pm(nll["exact"]["value"], nll["exact"]["stderr"])
        elif nll:
            lik = "; ".join(f"{tex_escape(k.upper().replace('_', '-'))} "
                            f"{pm(v['value'], v['stderr'])}" for k, v in nll.items())
        else:
            lik = "none"
        pr, rc = run["precision"], run["recall"]
        rows.append([tex_escape(run["dataset"]), tex_escape(run["family"]),
                     tex_escape(run["likelihood"]), lik,
                     pm(run["entropy"]["value"], run["entropy"]["stderr"]),
                     pm(pr["value"], pr["stderr"]), pm(rc["value"], rc["stderr"]),
                     num(run["mmd2"], 2), num(run["mmd_p_value"], 2),
                     num(run.get("energy_w1_kT"), 3), num(run["train_time_s"], 3),
                     num(run["sample_time_per_1000_s"], 2)])
    return {"families": tabular(
        ["data", "family", "likelihood", "test NLL or bound", "entropy $H$", "precision",
         "recall", "MMD$^2$", "$p$", "energy $W_1$", "train (s)", "s / 1000 samples"], rows,
        "lllrrrrrrrrr")}


def _tau(d: dict | None) -> str:
    if not d:
        return "--"
    return pm(d["tau"], d["stderr"]) if d.get("window_found", True) else num(d["tau"], 3)


def _phi4_tables(r: dict) -> dict[str, str]:
    t = r["target"]
    rows = []
    for key, label in (("hmc", "HMC"), ("nuts", "NUTS"), ("flow_imh", "flow IMH")):
        m = r.get(key)
        if not m:
            continue
        tau = m.get("tau_int", {})
        per = m.get("energy_evals_per_independent_sample", {}).get("abs_M") or {}
        rows.append([label, num(m.get("acceptance_rate"), 3), "--",
                     _tau(tau.get("abs_M")), _tau(tau.get("action")),
                     num(per.get("value"), 3) if isinstance(per, dict) else num(per, 3),
                     pm(m["abs_M"]["value"], m["abs_M"]["stderr"]),
                     pm(m["chi2"]["value"], m["chi2"]["stderr"])])
    rw_ = r.get("reweighting")
    if rw_:
        rows.append(["flow reweighted", "--", num(rw_["ess_fraction"], 3), "--", "--", "--",
                     pm(rw_["abs_M"]["value"], rw_["abs_M"]["stderr"]),
                     pm(rw_["chi2"]["value"], rw_["chi2"]["stderr"])])
    caption = (f"% L = {t['L']}, m2 = {t['m2']}, lambda = {t['lam']}, ensemble "
               f"{t.get('ensemble')}\n")
    return {"phi4": caption + tabular(
        ["method", "acceptance", "ESS fraction", r"$\tau_{\mathrm{int}}(|M|)$",
         r"$\tau_{\mathrm{int}}(S)$", r"evals / indep.\ $|M|$", r"$\langle|M|\rangle$",
         r"$\chi_2$"], rows)}


def _phi4_numbers(r: dict) -> dict[str, str]:
    t, f = r["target"], r["flow"]
    return {"PhiL": str(t["L"]), "PhiMsq": num(t["m2"]), "PhiLam": num(t["lam"], 4),
            "PhiLayers": str(f["num_layers"]), "PhiCoupling": tex_escape(f["coupling"]),
            "PhiHidden": " + ".join(str(h) for h in f["hidden_channels"]),
            "PhiSteps": integer(f["train_steps"]), "PhiBatch": integer(f["batch_size"]),
            "PhiParams": integer(f["num_parameters"])}


def _scaling_tables(r: dict) -> dict[str, str]:
    rows = []
    for n, rec in r["results_by_devices"].items():
        for row in rec.get("rows", []):
            cells = [n, integer(row["batch_size"])]
            for w in ("sample_and_log_prob", "training", "hmc"):
                cells.append(pm(row[w]["mean"], row[w]["stderr"], 1)
                             if row[w]["mean"] < 1e5 else num(row[w]["mean"], 2))
            rows.append(cells)
    return {"scaling": tabular(["devices", "batch", "samples/s", "train steps/s",
                                "HMC chain-steps/s"], rows)}


MANYWELL_LABELS = {"reverse_kl": "reverse KL", "forward_kl": "forward KL (exact samples)",
                   "fab": "FAB, no buffer", "fab_buffer": "FAB + replay buffer"}


def _manywell_tables(r: dict) -> dict[str, str]:
    rows = []
    for name, m in r["methods"].items():
        s_ = m["summary"]
        rows.append([tex_escape(MANYWELL_LABELS.get(name, name)),
                     pm(s_["log_Z_mae"], s_["log_Z_mae_stderr"]),
                     num(s_["log_Z_error_mean"], 2),
                     pm(s_["ess_fraction_mean"], s_["ess_fraction_stderr"]),
                     num(s_["modes_visited_mean"], 4), integer(s_["energy_evals"])])
    head = (f"% {r['target']} dim {r['dim']}, exact log Z {r['exact_log_Z']:.6f}, "
            f"{len(next(iter(r['methods'].values()))['seeds'])} seeds\n")
    return {"manywell": head + tabular(
        ["objective", r"$|\log\hat Z - \log Z|$ (mean over seeds)", "mean error",
         "flow ESS", "modes visited ($10^5$ samples)", "energy evaluations"], rows)}


def _manywell_numbers(r: dict) -> dict[str, str]:
    return {"MWdim": str(r["dim"]), "MWseeds":
            str(len(next(iter(r["methods"].values()))["seeds"])),
            "MWbudget": integer(r["energy_budget"])}


PARTICLE_SYSTEMS = (("dw4", "DW-4", "DW"), ("lj13", "LJ-13", "LJt"), ("lj55", "LJ-55", "LJf"))


def _pub(text: str | None) -> str:
    return "--" if not text else tex_escape(text)


def _ms(d: dict | None) -> str:
    """``mean ± std`` over the repeats of a particle metric."""
    return "--" if not d else pm(d["mean"], d["std"]) if d["std"] > 0 else num(d["mean"], 3)


def _particles_tables(r: dict) -> dict[str, str]:
    rows, cost = [], []
    for name, label, _ in PARTICLE_SYSTEMS:
        s = r["systems"].get(name)
        for method, pub in r["published"][name].items():
            rows.append([label, f"{method} (published)", _pub(pub.get("energy_w2")), "--",
                         _pub(pub.get("eq_w2")), "--", "--", "--", "--"])
        if s is None:
            rows.append([label, r"\physgen{} (not run here)"] + ["--"] * 7)
            continue
        m = s["metrics"]
        dist = {k: [_ms(m[k][q]) for q in ("energy_w2", "w2", "eq_w2", "distance_tv")]
                for k in m}
        rows.append([label, r"\physgen{} flow", *dist["flow"], "--", "--", "--"])
        rows.append([label, r"\physgen{} flow, reweighted", *dist["reweighted"],
                     pm(s["ess_fraction"], s["ess_fraction_stderr"]),
                     num(s["pareto_khat"], 2), pm(s["log_Z"]["value"], s["log_Z"]["stderr"])])
        rows.append([label, "reference vs reference", *dist["reference_split"],
                     "--", "--", "--"])
        ref, diag = s["reference"], s["reference"]["diagnostics (thinned samples)"]
        cost.append([label, integer(ref["num_energy_evals"]), num(ref["wall_time_s"], 3),
                     pm(diag["energy"]["tau_int"], diag["energy"]["tau_int_stderr"]),
                     f"{max(diag['energy']['rhat'], diag['mean_distance']['rhat']):.3f}",
                     integer(s["training"]["steps"]), num(s["training"]["wall_time_s"], 3),
                     integer(s["sampling"]["weighted_samples"]),
                     num(s["sampling"]["weighted_wall_time_s"], 3)])
    return {
        "particles": tabular(["system", "method", "E-W2 (kT)", "W2", "W2 aligned",
                              "distance TV", "ESS fraction", r"Pareto $\hat k$", r"$\log Z$"],
                             rows, "llrrrrrrr"),
        "particles_cost": tabular(
            ["system", "MCMC energy evals", "MCMC (s)", r"$\tau_{\mathrm{int}}(E)$",
             r"max $\hat R$", "training steps", "training (s)", "weighted samples",
             "weighting (s)"], cost, "lrrrrrrrr"),
    }


def _metric_mean(m: dict, kind: str, metric: str) -> str:
    return num(m[kind][metric]["mean"], 3) if m else "--"


def _particles_numbers(r: dict) -> dict[str, str]:
    out = {}
    for name, _, tag in PARTICLE_SYSTEMS:
        s = r["systems"].get(name)
        m = (s or {}).get("metrics", {})
        out.update({
            f"P{tag}ess": num(s["ess_fraction"], 3) if s else "--",
            f"P{tag}ewtwoFlow": _metric_mean(m, "flow", "energy_w2"),
            f"P{tag}ewtwoRw": _metric_mean(m, "reweighted", "energy_w2"),
            f"P{tag}ewtwoRef": _metric_mean(m, "reference_split", "energy_w2"),
            f"P{tag}wtwoFlow": _metric_mean(m, "flow", "w2"),
            f"P{tag}eqwtwoFlow": _metric_mean(m, "flow", "eq_w2"),
            f"P{tag}eqwtwoRef": _metric_mean(m, "reference_split", "eq_w2"),
            f"P{tag}Eref": num(s["target"]["mean_energy_reference"], 3) if s else "--",
            f"P{tag}steps": integer(s["training"]["steps"]) if s else "--",
            f"P{tag}samples": integer(s["sampling"]["weighted_samples"]) if s else "--",
            f"P{tag}block": integer(s["settings"]["block"]) if s else "--",
            f"P{tag}repeats": integer(s["settings"]["repeats"]) if s else "--",
        })
    return out


_ALANINE_LABELS = {"forward_kl": "forward KL", "reverse_kl": "reverse KL", "fab": "FAB"}


def _alanine_tables(r: dict) -> dict[str, str]:
    dash = "--"
    objectives = r["objectives"]
    first_o = next(iter(objectives.values()))
    first = first_o["torsions"]
    md = first["delta_F_phi_positive_minus_negative"]["md"]
    kl0, w20 = first["kl"], first["w2_torus"]
    e0 = first_o["energies"]["e_w2"]
    rows = [
        ["MD (reference)", pm(md["value"], md["stderr"]), dash, dash, dash, dash, dash, dash,
         integer(r["md"]["md_steps"])],
        ["MD half vs half", dash, num(kl0["phi"]["md_halves"], 3),
         num(kl0["psi"]["md_halves"], 3), num(w20["md_halves"], 3), num(e0["md_halves"], 3),
         dash, dash, dash],
    ]
    for name, o in objectives.items():
        t, e = o["torsions"], o["energies"]["e_w2"]
        d, kl, w2 = t["delta_F_phi_positive_minus_negative"], t["kl"], t["w2_torus"]
        label = _ALANINE_LABELS[name]
        rows += [
            [f"{label}, flow", dash, num(kl["phi"]["flow"], 3), num(kl["psi"]["flow"], 3),
             num(w2["flow"], 3), num(e["flow"], 3), dash, dash,
             integer(o["train_energy_evals"])],
            [f"{label}, reweighted", pm(d["reweighted"]["value"], d["reweighted"]["stderr"]),
             num(kl["phi"]["reweighted"], 3), num(kl["psi"]["reweighted"], 3),
             num(w2["reweighted"], 3), num(e["reweighted"], 3), num(o["ess_fraction"], 3),
             num(o["pareto_khat"], 2), dash],
        ]
    return {"alanine": tabular(
        ["", r"$\Delta F_{\phi>0}-{}_{\phi<0}$ (kT)", r"KL($\phi$)", r"KL($\psi$)",
         r"W2($\phi,\psi$)", "E-W2 (kT)", "ESS fraction", r"Pareto $\hat k$",
         "energy evaluations"],
        rows, "lrrrrrrrr")}


def _alanine_numbers(r: dict) -> dict[str, str]:
    times, o = r["times"], r["objectives"]
    out = {
        "ADmdSamples": integer(r["md"]["samples"]),
        "ADmdPositive": num(r["md"]["p_phi_positive"], 3),
        "ADmdPositiveGeyer": num(r["md"]["reference"]["p_phi_positive"]["stderr_geyer"], 2),
        "ADmdPositiveBlocks": num(r["md"]["reference"]["p_phi_positive"]["stderr_20_blocks"],
                                  2),
        "ADmdReplicas": integer(1 + len(r["md"]["replica_temperatures"])),
        "ADmdHottest": integer(max([r["config"]["temperature"],
                                    *r["md"]["replica_temperatures"]])),
        "ADmdTime": num(times["md_s"], 3),
        "ADsteps": integer(r["config"]["steps"]),
        "ADweighted": integer(r["config"]["weighted"]),
        "ADfabSteps": integer(r["config"]["fab_steps"]),
        "ADenergyHigh": integer(r["config"]["energy_high"]),
    }
    for name, tag in (("forward_kl", "Fkl"), ("reverse_kl", "Rkl"), ("fab", "Fab")):
        x = o.get(name)
        out.update({
            f"AD{tag}ess": num(x["ess_fraction"], 3) if x else "--",
            f"AD{tag}khat": num(x["pareto_khat"], 2) if x else "--",
            f"AD{tag}trainTime": num(times[f"{name}_train_s"], 3) if x else "--",
            f"AD{tag}weighTime": num(times[f"{name}_sample_and_weigh_s"], 3) if x else "--",
            f"AD{tag}ProfileWithin": num(sum(  # phi and psi together
                x["free_energy"][a]["reweighted_vs_md"]["fraction_within_2_se"]
                for a in ("phi", "psi")) / 2, 2) if x else "--",
            f"AD{tag}MdCopy": num(x["stereo_copies"]["reweighted_mass_in_md_copy"]["value"],
                                  2) if x else "--",
            f"AD{tag}Copies": integer(len(x["stereo_copies"]["flow_fraction_per_copy"]))
            if x else "--",
            f"AD{tag}Positive": pm(x["reweighted_p_phi_positive"]["value"],
                                   x["reweighted_p_phi_positive"]["stderr"]) if x else "--",
            f"AD{tag}FlowPositive": pm(x["flow_p_phi_positive"]["value"],
                                       x["flow_p_phi_positive"]["stderr"]) if x else "--",
        })
    return out
