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


@pytest.mark.slow
def test_double_well_quick(quick_run):
    out = quick_run("double_well")
    r = json.loads((out / "results.json").read_text())
    bg = r["boltzmann_generator"]
    assert abs(bg["log_Z"]["exact"] - 11.020467230187805) < 1e-9
    for name in ["log_Z", "p_A", "delta_F_B_minus_A_kT", "mean_x1"]:
        est = bg[name]
        # the printed z-scores: |z| > 4 has probability 6e-5 for a calibrated error
        assert est["stderr"] > 0 and abs(est["zscore"]) < 4, (name, est)
    assert 0.5 < bg["ess_fraction"] <= 1  # 200 steps of reverse KL already reach ~0.9
    # reverse KL went down by more than its noise from the identity flow's value (~ -7)
    assert bg["final_loss_mean_last_100"] < bg["initial_loss_mean_first_10"] - 2
    assert bg["num_energy_evals_total"] == bg["num_energy_evals_training"] + bg[
        "num_energy_evals_reweighting"]
    # per chain: init, the warm-up's re-initialisation, 10 leapfrog steps per transition
    assert r["hmc"]["num_energy_evals"] == 4 * (2 + 200 * 10 + 300 * 10)
    for fig in ["training_loss", "samples", "free_energy_profile", "hmc_trace"]:
        assert (out / f"{fig}.png").stat().st_size > 1000
    assert (out / "flow.ckpt").exists()


@pytest.mark.slow
def test_toy2d_quick(quick_run):
    out = quick_run("toy2d")
    r = json.loads((out / "results.json").read_text())
    assert [run["flow"] for run in r["runs"]] == ["realnvp", "nsf"]
    for run in r["runs"]:
        assert abs(run["density_integral_on_grid"] - 1) < 1e-2
        assert abs(run["entropy"]["value"] - 2.3957) < 5 * run["entropy"]["stderr"] + 0.003
        gap = run["gap_nll_minus_entropy"]
        # KL(p‖q) >= 0 up to noise, and below the best Gaussian's 0.90 nats (the standard
        # normal base: 1.47): the flow learnt the moons' shape
        assert -4 * gap["stderr"] < gap["value"] < 0.9, run
    assert (out / "toy2d.png").stat().st_size > 1000


@pytest.mark.slow
def test_scaling_benchmark_quick(quick_run):
    """The scaling benchmark measures 1 and 2 (forced host) devices, each in its own process,
    and reports throughput with errors and speed-ups against one device."""
    sys.path.insert(0, str(EXPERIMENTS / "benchmarks"))
    import scaling

    r = json.loads((quick_run("scaling") / "results.json").read_text())
    assert set(r["results_by_devices"]) == {"1", "2"}
    one = {row["batch_size"]: row for row in r["results_by_devices"]["1"]["rows"]}
    for n, rec in r["results_by_devices"].items():
        assert rec["machine"]["num_devices"] == int(n), rec
        assert "skipped" not in rec, rec
        for row in rec["rows"]:
            for w in scaling.WORKLOADS:
                m = row[w]
                assert 0 <= m["stderr"] < m["mean"], (n, w, m)  # measured, not noise
                ref = one[row["batch_size"]][w]["mean"]
                assert m["speedup"] == pytest.approx(m["mean"] / ref, rel=1e-9), (n, w, m)
    assert (quick_run("scaling") / "scaling.png").stat().st_size > 1000


@pytest.mark.slow
def test_diffusion_toy2d_quick(run_script):
    out = run_script("experiments/diffusion_toy2d.py", "--quick")
    r = json.loads((out / "results.json").read_text())
    for run in r["runs"]:
        gap = run["gap_nll_minus_entropy"]
        assert math.isfinite(gap["value"]) and gap["stderr"] > 0, run
        assert gap["value"] > -4 * gap["stderr"]  # KL(p||q) >= 0 up to noise


def test_lattice_conv_benchmark_quick(run_script):
    """Both forms of the periodic convolution are timed and give the same loss and gradient."""
    out = run_script("experiments/benchmarks/lattice_conv.py", "--quick")
    r = json.loads((out / "results.json").read_text())
    (row,) = r["rows"]
    for context in ("single_net", "scanned_layers"):
        q = row[context]
        assert q["loss_relative_difference"] < 1e-5 and q["grad_max_relative_difference"] < 1e-4
        assert all(t > 0 for t in q["grad_time_s"].values())
    assert (out / "lattice_conv.png").stat().st_size > 1000


def test_vs_flowjax_profile_splits_the_sampling_time():
    """The profile a slower row gets: XLA cost analysis and part timings for both libraries."""
    pytest.importorskip("flowjax")
    bench = _load("vs_flowjax", EXPERIMENTS / "benchmarks")
    prof = bench.profile("nsf", 2, bench.parse_args(["--quick"]))
    for lib in bench.LIBRARIES:
        assert prof[lib]["xla_cost"]["flops"] > 0 and prof[lib]["xla_cost"]["bytes accessed"] > 0
        assert prof[lib]["base_draws_s"] > 0 and prof[lib]["bijection_s"] > 0
