"""Regenerate every figure, table and number of the paper from the experiments, in one command.

    python paper/reproduce.py [--quick] [--only NAME ...] [--skip-run] [--out DIR]

Each experiment in :data:`EXPERIMENTS` runs as a subprocess (``--quick`` passes the scripts'
own ``--quick``) with its outputs under ``DIR/build/NAME``; its figures are copied into
``DIR/figures/``, its tables are written as LaTeX fragments into ``DIR/tables/`` and the numbers
quoted in the text as macros into ``DIR/generated/numbers.tex``. ``DIR`` defaults to this
folder, so ``latexmk -pdf main.tex`` here then builds the PDF; TeX is not needed to reproduce.
``--skip-run`` collects from an earlier run's ``build/`` without running anything.
A summary (what ran, how long, the machine) goes to ``DIR/generated/reproduce.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PAPER = Path(__file__).resolve().parent
ROOT = PAPER.parent
sys.path.insert(0, str(PAPER))
from _tex import _get, integer, num, pm, tabular, tex_escape  # noqa: E402


# ----------------------------------------------------------------------------- experiments
@dataclass(frozen=True)
class Experiment:
    """One experiment script and what the paper takes from it.

    ``figures`` maps an output file stem (the script writes ``stem.pdf`` and/or ``stem.png``)
    to the stem it gets in ``figures/``; ``tables(results) -> {name: tex}`` and
    ``numbers(results) -> {macro: text}`` read the script's results.json.
    """

    name: str
    script: str
    quick_args: tuple[str, ...] = ()
    full_args: tuple[str, ...] = ()
    figures: dict[str, str] = field(default_factory=dict)
    tables: Callable[[dict], dict[str, str]] = lambda r: {}
    numbers: Callable[[dict], dict[str, str]] = lambda r: {}


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
            rows.append([label, f"{method} (published)", _pub(pub.get("energy_w2")),
                         _pub(pub.get("w2")), "--", "--", "--", "--"])
        if s is None:
            rows.append([label, r"\physgen{} (not run here)"] + ["--"] * 6)
            continue
        m = s["metrics"]
        rows.append([label, r"\physgen{} flow", _ms(m["flow"]["energy_w2"]),
                     _ms(m["flow"]["w2"]), _ms(m["flow"]["distance_tv"]), "--", "--", "--"])
        rows.append([label, r"\physgen{} flow, reweighted", _ms(m["reweighted"]["energy_w2"]),
                     _ms(m["reweighted"]["w2"]), _ms(m["reweighted"]["distance_tv"]),
                     pm(s["ess_fraction"], s["ess_fraction_stderr"]),
                     num(s["pareto_khat"], 2), pm(s["log_Z"]["value"], s["log_Z"]["stderr"])])
        rows.append([label, "reference vs reference", _ms(m["reference_split"]["energy_w2"]),
                     _ms(m["reference_split"]["w2"]), _ms(m["reference_split"]["distance_tv"]),
                     "--", "--", "--"])
        ref, diag = s["reference"], s["reference"]["diagnostics (thinned samples)"]
        cost.append([label, integer(ref["num_energy_evals"]), num(ref["wall_time_s"], 3),
                     pm(diag["energy"]["tau_int"], diag["energy"]["tau_int_stderr"]),
                     f"{max(diag['energy']['rhat'], diag['mean_distance']['rhat']):.3f}",
                     integer(s["training"]["steps"]), num(s["training"]["wall_time_s"], 3),
                     integer(s["sampling"]["weighted_samples"]),
                     num(s["sampling"]["weighted_wall_time_s"], 3)])
    return {
        "particles": tabular(["system", "method", "E-W2 (kT)", "W2", "distance TV",
                              "ESS fraction", r"Pareto $\hat k$", r"$\log Z$"], rows,
                             "llrrrrrr"),
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
            f"P{tag}Eref": num(s["target"]["mean_energy_reference"], 3) if s else "--",
            f"P{tag}steps": integer(s["training"]["steps"]) if s else "--",
            f"P{tag}samples": integer(s["sampling"]["weighted_samples"]) if s else "--",
            f"P{tag}block": integer(s["settings"]["block"]) if s else "--",
            f"P{tag}repeats": integer(s["settings"]["repeats"]) if s else "--",
        })
    return out


EXPERIMENTS: list[Experiment] = [
    Experiment(
        "double_well", "experiments/double_well.py", ("--quick",), (),
        figures={"samples": "dw_samples", "free_energy_profile": "dw_free_energy_profile"},
        numbers=_double_well_numbers),
    Experiment(
        "toy2d", "experiments/toy2d.py", ("--quick", "--dataset", "moons"), (),
        tables=_toy2d_tables),
    Experiment(
        "ess_per_evaluation", "experiments/benchmarks/ess_per_evaluation.py",
        ("--quick", "--targets", "double_well", "--reach", "double_well", "--reach-cap",
         "8000", "--methods", "HMC", "PT", "BG reweighted", "BG stratified"),
        ("--reach", "double_well", "--seeds", "8", "--methods", "HMC", "NUTS", "MALA", "PT",
         "SMC", "BG reweighted", "BG stratified", "BG as IMH proposal"),
        figures={"ess_per_1k_evals": "ess_per_1k_evals"},
        tables=_ess_tables, numbers=_ess_numbers),
    Experiment(
        "vs_flowjax", "experiments/benchmarks/vs_flowjax.py", ("--quick",), (),
        tables=_flowjax_tables),
    Experiment(
        "families", "experiments/families.py", ("--quick",), (),
        figures={"samples": "families"}, tables=_families_tables),
    Experiment(
        "phi4", "experiments/phi4.py", ("--quick", "--ensemble", "broken"),
        ("--ensemble", "E2", "--steps", "14000", "--mcmc", "both"),
        figures={"magnetisation_histogram": "phi4_magnetisation",
                 "correlator": "phi4_correlator"},
        tables=_phi4_tables, numbers=_phi4_numbers),
    Experiment(
        "manywell", "experiments/benchmarks/manywell.py", ("--quick",),
        ("--dim", "32", "--steps", "3000", "--seeds", "5", "--segments", "3", "--schedule",
         "cosine"),
        figures={"manywell": "manywell"}, tables=_manywell_tables, numbers=_manywell_numbers),
    Experiment(
        "particles", "experiments/particles.py", ("--quick",), ("--system", "dw4", "lj13"),
        figures={"particles": "particles"}, tables=_particles_tables,
        numbers=_particles_numbers),
    Experiment(
        "scaling", "experiments/benchmarks/scaling.py", ("--quick",), (),
        figures={"scaling": "scaling"}, tables=_scaling_tables),
]


# ----------------------------------------------------------------------------- driver
def run_experiment(exp: Experiment, build: Path, quick: bool) -> dict:
    out = build / exp.name
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / exp.script), *(exp.quick_args if quick else exp.full_args),
           "--out", str(out)]
    if "--no-progress" not in cmd and _accepts(exp.script, "--no-progress"):
        cmd.append("--no-progress")
    print(f"[reproduce] {exp.name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out / "log.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"{exp.name} failed (exit {proc.returncode}); the end of its log:\n"
                           f"{tail}")
    print(f"[reproduce] {exp.name}: done in {wall:.1f} s", flush=True)
    return {"command": " ".join(cmd[1:]).replace(str(ROOT) + "/", ""), "wall_time_s": wall}


def _accepts(script: str, flag: str) -> bool:
    return flag in (ROOT / script).read_text()


def collect(exp: Experiment, build: Path, out: Path) -> tuple[dict[str, str], list[str]]:
    """Copy figures and write tables of one experiment; returns its numbers and files."""
    src = build / exp.name
    results_path = src / "results.json"
    if not results_path.exists():
        raise FileNotFoundError(f"{exp.name}: no results.json in {src}; run without --skip-run")
    results = json.loads(results_path.read_text())
    written = []
    for stem, dst in exp.figures.items():
        found = [f for f in (src / f"{stem}.pdf", src / f"{stem}.png") if f.exists()]
        if not found:
            raise FileNotFoundError(f"{exp.name}: figure {stem}.pdf/.png not produced in {src}")
        for f in found:
            target = out / "figures" / f"{dst}{f.suffix}"
            shutil.copyfile(f, target)
            written.append(str(target.relative_to(out)))
    for name, tex in exp.tables(results).items():
        target = out / "tables" / f"{name}.tex"
        target.write_text(tex)
        written.append(str(target.relative_to(out)))
    return exp.numbers(results), written


def write_numbers(numbers: dict[str, str], path: Path) -> None:
    lines = ["% written by paper/reproduce.py; do not edit"]
    for k, v in sorted(numbers.items()):
        if not re.fullmatch(r"[A-Za-z]+", k):
            raise ValueError(f"macro names must be letters only, got {k!r}")
        lines.append(rf"\expandafter\def\csname gen@{k}\endcsname{{{v}}}")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny runs (the pipeline, not the numbers)")
    p.add_argument("--out", type=Path, default=PAPER,
                   help="folder that receives build/, figures/, tables/, generated/")
    p.add_argument("--only", nargs="+", choices=[e.name for e in EXPERIMENTS],
                   help="run only these experiments (others are collected from build/)")
    p.add_argument("--skip-run", action="store_true", help="collect from build/ only")
    args = p.parse_args(argv)

    out = args.out.resolve()
    build = out / "build"
    for sub in ("build", "figures", "tables", "generated"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    summary = {"quick": args.quick, "machine": f"{platform.machine()} "
               f"{platform.processor() or ''}".strip(), "python": platform.python_version(),
               "experiments": {}}
    t0 = time.perf_counter()
    for exp in EXPERIMENTS:
        if not args.skip_run and (args.only is None or exp.name in args.only):
            summary["experiments"][exp.name] = run_experiment(exp, build, args.quick)
    numbers: dict[str, str] = {}
    files: list[str] = []
    for exp in EXPERIMENTS:
        n, written = collect(exp, build, out)
        clash = set(n) & set(numbers)
        if clash:
            raise ValueError(f"{exp.name}: macros defined twice: {sorted(clash)}")
        numbers.update(n)
        files += written
    import jax

    dev = jax.devices()[0]
    numbers["ReproMachine"] = tex_escape(
        f"{getattr(dev, 'device_kind', dev.platform)}, {summary['machine']}")
    write_numbers(numbers, out / "generated" / "numbers.tex")
    summary["files"] = files + ["generated/numbers.tex"]
    summary["total_time_s"] = time.perf_counter() - t0
    (out / "generated" / "reproduce.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[reproduce] {len(files)} files and {len(numbers)} numbers in {out} "
          f"({summary['total_time_s']:.1f} s)")
    return summary


if __name__ == "__main__":
    main()
