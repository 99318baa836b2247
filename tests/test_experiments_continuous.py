"""The experiments' continuous-time options run in --quick mode and write what they promise."""

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


@pytest.mark.slow
def test_toy2d_continuous_families_quick(tmp_path):
    _load("toy2d").main(
        [
            "--quick",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--dataset",
            "moons",
            "--model",
            "flow_matching",
            "cnf",
            "diffusion",
        ]
    )
    r = json.loads((tmp_path / "results.json").read_text())
    assert [run["flow"] for run in r["runs"]] == ["flow_matching", "cnf", "diffusion"]
    for run in r["runs"]:
        # the exact ODE likelihood is a normalised density
        assert abs(run["density_integral_on_grid"] - 1) < 2e-2
        gap = run["gap_nll_minus_entropy"]
        assert math.isfinite(gap["value"]) and gap["stderr"] > 0
        assert gap["value"] > -4 * gap["stderr"]
    assert (tmp_path / "toy2d.png").stat().st_size > 1000
    assert (tmp_path / "trajectories.png").stat().st_size > 1000


@pytest.mark.parametrize("model", ["flow_matching", "diffusion"])
def test_double_well_continuous_model_quick(tmp_path, model):
    _load("double_well").main(
        ["--quick", "--out", str(tmp_path), "--no-progress", "--model", model]
    )
    r = json.loads((tmp_path / "results.json").read_text())
    bg = r["boltzmann_generator"]
    assert bg["model"] == model
    assert 0 < bg["training_data_fraction_in_B"] < 1  # data from both wells
    assert 0 < bg["ess_fraction"] <= 1
    for name in ["log_Z", "p_A", "delta_F_B_minus_A_kT"]:
        est = bg[name]
        assert math.isfinite(est["value"]) and est["stderr"] > 0 and "exact" in est
    assert (
        bg["num_energy_evals_total"]
        == bg["num_energy_evals_training"] + bg["num_energy_evals_reweighting"]
    )
    assert (tmp_path / "free_energy_profile.png").stat().st_size > 1000
