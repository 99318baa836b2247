"""experiments/alanine_dipeptide.py --quick: OpenMM builds the molecule and runs the
replica-exchange MD; flows on internal coordinates train by forward KL, reverse KL and FAB
and are reweighted with the JAX force field; results.json carries what the script promises,
and each log Z lies between its two bounds."""

import json
import math

import pytest


@pytest.mark.slow
def test_alanine_dipeptide_quick(quick_run):
    """The paper's quick run, shared with the paper test."""
    tmp_path = quick_run("alanine")
    r = json.loads((tmp_path / "results.json").read_text())
    md = r["md"]
    assert md["samples"] == 400 and 0 <= md["p_phi_positive"] <= 1
    assert md["replica_temperatures"] == [360.0] and 0 < md["exchange_acceptance"][0] <= 1
    assert md["md_steps"] == 2 * (500 + 400 * 20)
    assert set(r["objectives"]) == {"forward_kl", "reverse_kl", "fab"}
    for name, o in r["objectives"].items():
        assert math.isfinite(o["nll_train"]) and math.isfinite(o["nll_test"]), name
        assert 0 < o["ess_fraction"] <= 1 and not math.isnan(float(o["pareto_khat"]))
        assert o["weight_warnings"], name  # 20 training steps: the checks must say so
        # E_q[log w] <= log Z <= E_p[log w] (the gaps are KL(q‖p) and KL(p‖q))
        assert o["mean_log_w_flow"] <= o["log_Z"]["value"] <= o["mean_log_w_md"], name
        p = o["reweighted_p_phi_positive"]
        assert 0 <= p["value"] <= 1 and p["stderr"] >= 0
        t = o["torsions"]
        assert t["delta_F_phi_positive_minus_negative"]["md"]["p_phi_positive"] == \
            md["p_phi_positive"]
        for angle in ("phi", "psi"):
            kl = t["kl"][angle]
            assert set(kl) == {"flow", "reweighted", "md_halves"}
            assert all(math.isfinite(v) and v >= 0 for v in kl.values()), kl
        e = o["energies"]
        assert set(e["e_w2"]) == {"flow", "reweighted", "md_halves"}, name
        assert all(math.isfinite(v) and v >= 0 for v in e["e_w2"].values()), e
        assert e["mean"]["md"] == pytest.approx(md["mean_reduced_energy"], rel=1e-12)
        w2 = t["w2_torus"]  # at most the torus' diameter, π√2
        assert w2["samples"] == 200 and all(0 < w2[k] <= math.pi * math.sqrt(2) for k in (
            "flow", "reweighted", "md_halves")), w2
    evals = {n: o["train_energy_evals"] for n, o in r["objectives"].items()}
    assert evals["forward_kl"] == 0 and evals["reverse_kl"] == 20 * 64
    assert evals["fab"] > evals["reverse_kl"]  # AIS: several evaluations per sample
    for ext in ("png", "pdf"):
        for figure in ("ramachandran", "energies"):
            assert (tmp_path / f"{figure}.{ext}").stat().st_size > 1000
