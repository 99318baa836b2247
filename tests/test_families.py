"""experiments/families.py in --quick mode: every likelihood kind, labelled as such."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load():
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location("families", EXPERIMENTS / "families.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_help(capsys):
    mod = _load()
    with pytest.raises(SystemExit) as e:
        mod.parse_args(["--help"])
    assert e.value.code == 0
    assert "--quick" in capsys.readouterr().out
    assert {"vae", "gan", "autoregressive", "realnvp", "nsf"} <= set(mod.FAMILIES)
    with pytest.raises(ValueError, match="likelihood kind"):
        mod.register("x", "approximate")


def test_families_quick(tmp_path):
    _load().main(
        [
            "--quick",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--datasets",
            "double_well",
            "--families",
            "autoregressive",
            "vae",
            "gan",
        ]
    )
    r = json.loads((tmp_path / "results.json").read_text())
    runs = {run["family"]: run for run in r["runs"]}
    assert {k: v["likelihood"] for k, v in runs.items()} == {
        "autoregressive": "exact",
        "vae": "bound",
        "gan": "none",
    }
    assert set(runs["autoregressive"]["test_nll"]) == {"exact"}
    assert set(runs["vae"]["test_nll"]) == {"elbo", "iwae_16"}
    assert runs["gan"]["test_nll"] == {}  # no density, hence no likelihood at all
    assert abs(r["references"]["double_well"]["log_Z"] - 11.020467230187805) < 1e-9
    for run in runs.values():
        for v in run["test_nll"].values():
            assert math.isfinite(v["value"]) and v["stderr"] > 0
        # an NLL (or bound) is never below the data entropy by more than noise
        h = run["entropy"]
        for v in run["test_nll"].values():
            assert v["value"] > h["value"] - 4 * math.hypot(v["stderr"], h["stderr"])
        assert 0 <= run["precision"]["value"] <= 1 and 0 <= run["recall"]["value"] <= 1
        assert 0 < run["mmd_p_value"] <= 1
        assert run["energy_w1_kT"] >= 0 and run["sample_time_per_1000_s"] > 0
    assert (tmp_path / "samples.png").stat().st_size > 1000
    assert "none (no density)" in (tmp_path / "table.md").read_text()
