"""experiments/particles.py --quick (run once per session by the quick_run fixture) writes
what it promises: the reference with its seed, command and diagnostics, metrics with their
spread for the raw flow, the reweighted flow and the reference split, ESS and log Z with an
error, costs, and the figure; reproduce.py turns it into tables and numbers."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import jax
import numpy as np
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
        for metric in ("energy_w2", "w2", "eq_w2", "distance_tv"):
            m = s["metrics"][kind][metric]
            assert len(m["values"]) == s["settings"]["repeats"] and m["std"] >= 0
            assert math.isfinite(m["mean"]) and m["mean"] >= 0
        m = s["metrics"][kind]  # alignment removes the random orientations: far below plain W2
        assert all(a < b for a, b in zip(m["eq_w2"]["values"], m["w2"]["values"], strict=True))
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
    assert "0.43" in tables["particles"]  # ASBS's aligned W2 in its column


def test_particles_quick_saves_the_flow_it_reports_on(quick_run):
    """The trained flow is saved; loaded back, it draws the raw samples the run scored."""
    out = quick_run("particles")
    s = json.loads((out / "results.json").read_text())["systems"]["dw4"]
    spec = importlib.util.spec_from_file_location("particles", ROOT / "experiments" /
                                                  "particles.py")
    pm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pm)
    args = pm.parse_args(["--quick"])
    cfg = pm.settings(args, "dw4")
    like = pm.equivariant_cnf(jax.random.key(1), 4, 2, hidden=cfg["hidden"],
                              num_layers=cfg["layers"], rtol=args.rtol, atol=args.atol,
                              throw=False)
    flow = pm.physgen.load(out / "flow_dw4_quick.eqx", like)
    meta = pm.physgen.load_metadata(out / "flow_dw4_quick.eqx")
    assert meta["system"] == "dw4" and meta["seed"] == 0 and meta["steps"] == cfg["steps"]
    assert (meta["rtol"], meta["atol"]) == (args.rtol, args.atol)
    k_raw = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 6)[2]
    raw = pm.flow_samples(flow, k_raw, cfg["block"] * cfg["repeats"], args.chunk)
    energy = np.asarray(pm.batch_energy(pm.SYSTEMS["dw4"]["make"](0.0), raw))
    assert np.nanmean(energy) == pytest.approx(s["mean_energy"]["flow"], rel=1e-5)
    untrained = pm.flow_samples(like, k_raw, cfg["block"] * cfg["repeats"], args.chunk)
    assert not np.allclose(untrained, raw)
