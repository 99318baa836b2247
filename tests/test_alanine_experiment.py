"""experiments/alanine_dipeptide.py --quick: OpenMM builds the molecule and runs the MD, a
flow on internal coordinates trains by forward KL and is reweighted with the JAX force field;
results.json carries what the script promises, and log Z lies between its two bounds."""

import importlib.util
import json
import math
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_alanine_dipeptide_quick(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "_alanine", EXPERIMENTS / "alanine_dipeptide.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--quick", "--no-progress", "--out", str(tmp_path)])
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["md"]["samples"] == 400 and 0 <= r["md"]["p_phi_positive"] <= 1
    assert math.isfinite(r["nll_train"]) and math.isfinite(r["nll_test"])
    assert 0 < r["ess_fraction"] <= 1 and not math.isnan(float(r["pareto_khat"]))  # may be inf
    assert r["weight_warnings"]  # 20 training steps: the checks must say it is unreliable
    # E_q[log w] <= log Z <= E_p[log w] (the gaps are KL(q‖p) and KL(p‖q))
    lz = r["log_Z"]["value"]
    assert r["mean_log_w_flow"] <= lz <= r["mean_log_w_md"], r
    p = r["reweighted_p_phi_positive"]
    assert 0 <= p["value"] <= 1 and p["stderr"] >= 0
    for ext in ("png", "pdf"):
        assert (tmp_path / f"ramachandran.{ext}").stat().st_size > 1000
