"""The experiment scripts run in --quick mode and write what they promise."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load(name, folder=EXPERIMENTS):
    sys.path.insert(0, str(folder))
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
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
    scaling = _load("scaling", EXPERIMENTS / "benchmarks")
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


def test_lattice_conv_benchmark_quick(tmp_path):
    """Both forms of the periodic convolution are timed and give the same loss and gradient."""
    _load("lattice_conv", EXPERIMENTS / "benchmarks").main(["--quick", "--out", str(tmp_path)])
    r = json.loads((tmp_path / "results.json").read_text())
    (row,) = r["rows"]
    for context in ("single_net", "scanned_layers"):
        q = row[context]
        assert q["loss_relative_difference"] < 1e-5 and q["grad_max_relative_difference"] < 1e-4
        assert all(t > 0 for t in q["grad_time_s"].values())
    assert (tmp_path / "lattice_conv.png").stat().st_size > 1000


def test_vs_flowjax_profile_splits_the_sampling_time():
    """The profile a slower row gets: XLA cost analysis and part timings for both libraries."""
    pytest.importorskip("flowjax")
    bench = _load("vs_flowjax", EXPERIMENTS / "benchmarks")
    prof = bench.profile("nsf", 2, bench.parse_args(["--quick"]))
    for lib in bench.LIBRARIES:
        assert prof[lib]["xla_cost"]["flops"] > 0 and prof[lib]["xla_cost"]["bytes accessed"] > 0
        assert prof[lib]["base_draws_s"] > 0 and prof[lib]["bijection_s"] > 0
