"""experiments/phi4.py runs in --quick mode and writes what it promises."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

import physgen

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load():
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location("phi4", EXPERIMENTS / "phi4.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        _load().parse_args(["--help"])
    assert e.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_phi4_quick(quick_run):
    tmp_path = quick_run("phi4")
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["target"]["L"] == 4 and r["flow"]["z2"] == "mixture"
    assert not r["flow"]["path_gradient"]  # off by default for the mixture (cost per step)
    assert r["target"]["lam_tilde"] == pytest.approx(0.5)
    for method in ("flow_imh", "hmc"):
        m = r[method]
        assert 0 <= m["acceptance_rate"] <= 1
        for q in ("abs_M", "chi2", "binder"):
            assert math.isfinite(m[q]["value"]) and m[q]["stderr"] > 0
        for q in ("abs_M", "M", "action"):
            assert m["tau_int"][q]["tau"] > 0 and m["tau_int"][q]["stderr"] >= 0
        assert len(m["G_t"]["value"]) == 4
    assert r["hmc"]["grad_evals_per_step"] == pytest.approx(10, rel=0.1)
    assert r["flow_imh"]["num_grad_evals"] == 0
    assert 0 < r["reweighting"]["ess_fraction"] <= 1
    # reverse KL training lowered the loss below the identity flow's starting value
    f = r["flow"]
    assert f["final_loss_mean_last_100"] < f["initial_loss_mean_first_10"] - 1
    for fig in ("training", "magnetisation_histogram", "correlator", "tau_int"):
        assert (tmp_path / f"{fig}.png").stat().st_size > 0


@pytest.mark.slow
def test_phi4_saves_the_flow_and_samples_it_again(tmp_path):
    """flow.eqx holds the trained flow: ``--init`` with ``--steps 0`` redraws the same samples."""
    mod = _load()
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--quick", "--ensemble", "E1", "--no-progress", "--mcmc", "hmc"]
    mod.main([*common, "--out", str(a), "--path-gradient", "--steps", "20"])
    ra = json.loads((a / "results.json").read_text())
    assert ra["flow"]["path_gradient"] and (a / "flow.eqx").stat().st_size > 0
    assert physgen.load_metadata(a / "flow.eqx")["lam"] == pytest.approx(6.975)
    mod.main([*common, "--out", str(b), "--init", str(a / "flow.eqx"), "--steps", "0"])
    rb = json.loads((b / "results.json").read_text())
    assert rb["flow"]["init"] == str(a / "flow.eqx") and not (b / "training.png").exists()
    # same seed, same flow: identical reweighting samples (a fresh flow would differ)
    assert rb["reweighting"]["log_Z"] == ra["reweighting"]["log_Z"]
    assert rb["reweighting"]["ess_fraction"] == ra["reweighting"]["ess_fraction"]
    with pytest.raises(physgen.CheckpointError,  # another architecture, named
                       match=r"saved with other hyperparameters \(kernel_size = \[3, 3\]"):
        mod.main([*common, "--out", str(b), "--init", str(a / "flow.eqx"), "--kernel", "5"])
