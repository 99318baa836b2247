"""The experiment scripts run in --quick mode and write what they promise."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load(name):
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["double_well", "toy2d", "diffusion_toy2d"])
def test_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        _load(name).parse_args(["--help"])
    assert e.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_double_well_quick(tmp_path):
    _load("double_well").main(["--quick", "--out", str(tmp_path), "--no-progress"])
    r = json.loads((tmp_path / "results.json").read_text())
    bg = r["boltzmann_generator"]
    for name in ["log_Z", "p_A", "delta_F_B_minus_A_kT"]:
        est = bg[name]
        assert math.isfinite(est["value"]) and est["stderr"] > 0 and "exact" in est
    assert abs(bg["log_Z"]["exact"] - 11.020467230187805) < 1e-9
    assert 0 < bg["ess_fraction"] <= 1
    # a few hundred reverse-KL steps lower the loss from the identity flow's value
    assert bg["final_loss_mean_last_100"] < bg["initial_loss_mean_first_10"]
    assert bg["num_energy_evals_total"] == bg["num_energy_evals_training"] + bg[
        "num_energy_evals_reweighting"]
    assert r["hmc"]["num_energy_evals"] > 0
    for fig in ["training_loss", "samples", "free_energy_profile", "hmc_trace"]:
        assert (tmp_path / f"{fig}.png").stat().st_size > 1000
    assert (tmp_path / "flow.ckpt").exists()


def test_toy2d_quick(tmp_path):
    _load("toy2d").main(["--quick", "--out", str(tmp_path), "--no-progress",
                         "--dataset", "moons", "--flows", "nsf"])
    r = json.loads((tmp_path / "results.json").read_text())
    (run,) = r["runs"]
    assert abs(run["density_integral_on_grid"] - 1) < 1e-2
    assert abs(run["entropy"]["value"] - 2.3957) < 5 * run["entropy"]["stderr"] + 0.003
    assert run["gap_nll_minus_entropy"]["value"] > -3 * run["gap_nll_minus_entropy"]["stderr"]
    assert (tmp_path / "toy2d.png").stat().st_size > 1000


def test_scaling_benchmark_quick(tmp_path):
    """The scaling benchmark measures 1 and 2 (forced host) devices, each in its own process,
    and reports throughput with errors and speed-ups against one device."""
    sys.path.insert(0, str(EXPERIMENTS / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "scaling", EXPERIMENTS / "benchmarks" / "scaling.py")
    scaling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)
    scaling.main(["--quick", "--out", str(tmp_path)])
    r = json.loads((tmp_path / "results.json").read_text())
    assert set(r["results_by_devices"]) == {"1", "2"}
    for n, rec in r["results_by_devices"].items():
        assert rec["machine"]["num_devices"] == int(n), rec
        assert "skipped" not in rec, rec
        for row in rec["rows"]:
            for w in scaling.WORKLOADS:
                assert row[w]["mean"] > 0 and math.isfinite(row[w]["mean"]), (n, w, row[w])
                assert row[w]["speedup"] > 0
    assert (tmp_path / "scaling.png").stat().st_size > 1000


def test_diffusion_toy2d_quick(tmp_path):
    _load("diffusion_toy2d").main(["--quick", "--no-progress", "--out", str(tmp_path)])
    r = json.loads((tmp_path / "results.json").read_text())
    for run in r["runs"]:
        gap = run["gap_nll_minus_entropy"]
        assert math.isfinite(gap["value"]) and gap["stderr"] > 0, run
        assert gap["value"] > -4 * gap["stderr"]  # KL(p||q) >= 0 up to noise
