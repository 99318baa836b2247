"""experiments/phi4.py runs in --quick mode and writes what it promises."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

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


def test_phi4_quick(tmp_path):
    _load().main(["--quick", "--ensemble", "broken", "--out", str(tmp_path), "--no-progress"])
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["target"]["L"] == 4 and r["flow"]["z2_equivariant"]
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
    assert r["flow"]["final_loss_mean_last_100"] < 1e6
    for fig in ("training", "magnetisation_histogram", "correlator", "tau_int"):
        assert (tmp_path / f"{fig}.png").stat().st_size > 0
