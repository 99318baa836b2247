"""experiments/alanine_dipeptide.py --quick: OpenMM builds the molecule and runs the MD, a
flow on internal coordinates trains by forward KL and is reweighted with the JAX force field;
results.json carries what the script promises, and log Z lies between its two bounds."""

import json
import math

import pytest


@pytest.mark.slow
def test_alanine_dipeptide_quick(quick_run):
    """The paper's quick run, shared with the paper test."""
    tmp_path = quick_run("alanine")
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
    t = r["torsions"]
    md = t["delta_F_phi_positive_minus_negative"]["md"]
    assert md["p_phi_positive"] == r["md"]["p_phi_positive"]
    for angle in ("phi", "psi"):
        kl = t["kl"][angle]
        assert set(kl) == {"flow", "reweighted", "md_halves"}
        assert all(math.isfinite(v) and v >= 0 for v in kl.values()), kl
    w2 = t["w2_torus"]  # at most the torus' diameter, π√2
    assert w2["samples"] == 200 and all(0 < w2[k] <= math.pi * math.sqrt(2) for k in (
        "flow", "reweighted", "md_halves")), w2
    for ext in ("png", "pdf"):
        assert (tmp_path / f"ramachandran.{ext}").stat().st_size > 1000
