"""experiments/particles.py --quick (run once per session by the quick_run fixture) writes
what it promises: the reference with its seed, command and diagnostics, metrics with their
spread for the raw flow, the reweighted flow and the reference split, ESS and log Z with an
error, costs, and the figure; reproduce.py turns it into tables and numbers."""

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "paper"))

import reproduce  # noqa: E402

# one quick run shared by every test: first in the queue (conftest)
pytestmark = pytest.mark.slow


def test_particles_quick_results(quick_run):
    out = quick_run("particles")
    r = json.loads((out / "results.json").read_text())
    assert list(r["systems"]) == ["dw4"]  # --quick runs DW-4 only
    s = r["systems"]["dw4"]
    ref = s["reference"]
    assert ref["seed"] == 0 and ref["command"].startswith("python experiments/particles.py")
    assert ref["num_energy_evals"] > 0 and ref["wall_time_s"] > 0
    for obs in ("energy", "mean_distance"):
        d = ref["diagnostics (thinned samples)"][obs]
        assert d["tau_int"] >= 0 and math.isfinite(d["rhat"]) and d["ess_bulk"] > 0
    assert (out / "reference_dw4_quick.npz").is_file()
    for kind in ("flow", "reweighted", "reference_split"):
        for metric in ("energy_w2", "w2", "distance_tv"):
            m = s["metrics"][kind][metric]
            assert len(m["values"]) == s["settings"]["repeats"] and m["std"] >= 0
            assert math.isfinite(m["mean"]) and m["mean"] >= 0
    assert 0 < s["ess_fraction"] <= 1 and math.isfinite(s["pareto_khat"])
    assert math.isfinite(s["log_Z"]["value"]) and s["log_Z"]["stderr"] > 0
    assert s["sampling"]["num_energy_evals"] == s["sampling"]["weighted_samples"]
    assert s["training"]["wall_time_s"] > 0
    assert (out / "particles.png").stat().st_size > 1000
    tables = reproduce._particles_tables(r)
    assert "DW-4" in tables["particles"] and "ASBS (published)" in tables["particles"]
    assert "not run here" in tables["particles"]  # LJ-13 and LJ-55 are not run in --quick
    numbers = reproduce._particles_numbers(r)
    assert numbers["PDWess"] != "--" and numbers["PLJtess"] == "--"
