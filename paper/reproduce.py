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
from _sections import (  # noqa: E402
    _alanine_numbers,
    _alanine_tables,
    _double_well_numbers,
    _ess_numbers,
    _ess_tables,
    _families_tables,
    _flowjax_tables,
    _manywell_numbers,
    _manywell_tables,
    _particles_numbers,
    _particles_tables,
    _phi4_numbers,
    _phi4_tables,
    _scaling_tables,
    _toy2d_tables,
)
from _tex import tex_escape  # noqa: E402


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
         "4000", "--methods", "HMC", "PT", "BG reweighted", "BG stratified"),
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
        "alanine", "experiments/alanine_dipeptide.py", ("--quick",), (),
        figures={"ramachandran": "alanine_ramachandran", "energies": "alanine_energies",
                 "free_energy": "alanine_free_energy"},
        tables=_alanine_tables,
        numbers=_alanine_numbers),
    Experiment(
        "scaling", "experiments/benchmarks/scaling.py", ("--quick",), (),
        figures={"scaling": "scaling"}, tables=_scaling_tables),
]


# ----------------------------------------------------------------------------- driver
def run_experiment(exp: Experiment, build: Path, quick: bool,
                   env: dict[str, str] | None = None) -> dict:
    """Run ``exp`` (its quick or full arguments) in a subprocess writing to ``build/NAME``;
    ``env``: the subprocess's environment (default: this process's)."""
    out = build / exp.name
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / exp.script), *(exp.quick_args if quick else exp.full_args),
           "--out", str(out)]
    if "--no-progress" not in cmd and _accepts(exp.script, "--no-progress"):
        cmd.append("--no-progress")
    print(f"[reproduce] {exp.name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
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
