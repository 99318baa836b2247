"""The experiments' continuous-time options run in --quick mode (each in a subprocess,
``run_script``) and write what they promise."""

import json
import math

import pytest


@pytest.mark.slow
def test_toy2d_continuous_families_quick(run_script):
    out = run_script("experiments/toy2d.py", "--quick", "--dataset", "moons",
                     "--model", "flow_matching", "cnf", "diffusion")
    r = json.loads((out / "results.json").read_text())
    assert [run["flow"] for run in r["runs"]] == ["flow_matching", "cnf", "diffusion"]
    for run in r["runs"]:
        # the exact ODE likelihood is a normalised density
        assert abs(run["density_integral_on_grid"] - 1) < 2e-2
        gap = run["gap_nll_minus_entropy"]
        assert math.isfinite(gap["value"]) and gap["stderr"] > 0
        assert gap["value"] > -4 * gap["stderr"]
    assert (out / "toy2d.png").stat().st_size > 1000
    assert (out / "trajectories.png").stat().st_size > 1000


@pytest.mark.parametrize("model", ["flow_matching", "diffusion"])
def test_double_well_continuous_model_quick(run_script, model):
    out = run_script("experiments/double_well.py", "--quick", "--model", model)
    r = json.loads((out / "results.json").read_text())
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
    assert (out / "free_energy_profile.png").stat().st_size > 1000
