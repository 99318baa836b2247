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


@pytest.mark.slow
def test_families_quick(quick_run):
    """Every family on the quick data set (the double well), each labelled with its kind of
    likelihood. This is a smoke test of the pipeline (100 steps): the GAN's quality is
    tested apart (tests/test_gan.py), the likelihoods here only within loose bounds."""
    out = quick_run("families")
    r = json.loads((out / "results.json").read_text())
    kinds = {"realnvp": "exact", "nsf": "exact", "autoregressive": "exact", "vae": "bound",
             "gan": "none", "flow_matching": "exact", "diffusion": "exact"}
    runs = {run["family"]: run for run in r["runs"]}
    assert {run["dataset"] for run in r["runs"]} == {"double_well"}
    assert {k: v["likelihood"] for k, v in runs.items()} == kinds
    assert set(runs["autoregressive"]["test_nll"]) == {"exact"}
    assert set(runs["vae"]["test_nll"]) == {"elbo", "iwae_16"}
    assert runs["gan"]["test_nll"] == {}  # no density, hence no likelihood at all
    for run in runs.values():
        h = run["entropy"]
        for v in run["test_nll"].values():
            se = math.hypot(v["stderr"], h["stderr"])
            # an NLL (or bound) lies above the entropy (up to noise)
            assert v["value"] > h["value"] - 4 * se, (run["family"], v)
            # and a model that learnt something within 2.5 nats of it; 100 steps of
            # score matching do not make a density yet (NLL ~ 8), the others do
            if run["family"] != "diffusion":
                assert v["value"] < h["value"] + 2.5, (run["family"], v)
        assert 0 <= run["precision"]["value"] <= 1 and 0 <= run["recall"]["value"] <= 1
        assert 0 < run["mmd_p_value"] <= 1 and run["sample_time_per_1000_s"] > 0
    # the exact families (flows) already cover the data: recall far from zero
    assert all(runs[f]["recall"]["value"] > 0.5 for f in ("realnvp", "nsf")), runs
    assert abs(r["references"]["double_well"]["log_Z"] - 11.020467230187805) < 1e-9
    assert all(run["energy_w1_kT"] >= 0 for run in runs.values())
    assert (out / "samples.png").stat().st_size > 1000
    assert "none (no density)" in (out / "table.md").read_text()
