"""The sampler comparison (experiments/_compare.py) and its benchmark script."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(ROOT / "experiments" / "benchmarks"))

import _compare  # noqa: E402
import ess_per_evaluation  # noqa: E402

import physgen  # noqa: E402
from physgen.flows import neural_spline_flow  # noqa: E402
from physgen.objectives import ReverseKL  # noqa: E402
from physgen.targets import DoubleWell  # noqa: E402


def test_quick_benchmark_writes_one_row_per_method_per_target(tmp_path):
    # one target keeps the suite fast; the others run the same code path
    chosen = ["many_well"]
    results = ess_per_evaluation.main(
        ["--quick", "--out", str(tmp_path), "--no-progress", "--targets", *chosen]
    )
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert set(on_disk["targets"]) == set(chosen)
    labels = None
    for name, entry in on_disk["targets"].items():
        rows = entry["table"]
        assert [r["key"] for r in rows] == list(_compare.DEFAULT_METHODS), name
        if labels is None:
            labels = [r["method"] for r in rows]
        for r in rows:
            evals = r["num_energy_evals"]
            assert isinstance(evals, int) and evals > 0, (name, r)
            assert math.isfinite(evals) and math.isfinite(r["total_energy_evals"])
            assert r["total_energy_evals"] == evals + r["train_energy_evals"]
            if r["key"] in _compare.BG_METHODS:
                assert r["train_energy_evals"] > 0
            else:
                assert r["train_energy_evals"] == 0
            assert r["wall_time_s"] is not None and r["wall_time_s"] >= 0
        # every method got the same budget; adaptive ones (NUTS, SMC) may overshoot by a chunk
        budget = on_disk["config"]["budget"]
        assert all(0.5 * budget <= r["num_energy_evals"] <= 2 * budget for r in rows), name
    assert results["targets"].keys() == on_disk["targets"].keys()
    for ext in ("png", "pdf"):
        assert (tmp_path / f"ess_per_1k_evals.{ext}").stat().st_size > 0


def test_trapped_hmc_vs_reweighted_boltzmann_generator():
    """HMC started in the left well at a small budget never sees B or is many standard errors
    off; a briefly trained BG, reweighted, gets p_B within 3 standard errors."""
    target = DoubleWell(dim=2)
    ref = target.references()
    assert ref["p_B"] == pytest.approx(0.03293, abs=1e-5)
    states = (target.state_indicator_A, target.state_indicator_B)
    exact = {"observable": ref["p_B"], "delta_F": ref["delta_F_B_minus_A"]}

    steps, batch = 400, 128
    flow = neural_spline_flow(jax.random.key(1), 2, num_layers=3, width=24, num_bins=8,
                              interval=6.0)
    flow, _ = physgen.fit(
        jax.random.key(2), flow, ReverseKL(target, batch, path_gradient=True), steps=steps,
        optimizer=optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=0.01)),
        progress=False, chunk_size=100,
    )
    rows = _compare.compare_samplers(
        jax.random.key(3), target, energy_budget=20_000, num_chains=4, flow=flow,
        flow_train_evals=steps * batch, states=states, exact=exact,
        initial_position=jnp.array([ref["minimum_A_x1"], 0.0]),
        methods=["HMC", "BG reweighted"], log=None,
    )
    hmc, bg = rows
    assert hmc["num_energy_evals"] <= 20_000 and bg["num_energy_evals"] == 20_000
    assert bg["train_energy_evals"] == steps * batch
    assert bg["total_energy_evals"] == 20_000 + steps * batch

    never_visited = hmc["chains_visiting_B"] == 0
    if never_visited:
        assert hmc["estimate"] == 0.0 and hmc["ess"] is None
        assert hmc["delta_F"]["value"] == math.inf
    else:
        assert abs(hmc["z_score"]) > 5, hmc

    assert bg["error"] > 0 and abs(bg["z_score"]) < 3, bg
    assert abs(bg["delta_F"]["z_score"]) < 3, bg
    assert bg["ess"] > 1000  # Kish ESS of the reweighted flow samples

    text = _compare.render_rows(rows)
    assert "BG reweighted" in text and "HMC" in text


def test_evals_to_reach_reports_not_reached_within_cap():
    """A trapped HMC cannot reach se(ΔF) ≤ 0.05 kT: reported honestly at a small cap."""
    target = DoubleWell(dim=2)
    ref = target.references()
    out = _compare.evals_to_reach(
        jax.random.key(0), target, "HMC",
        states=(target.state_indicator_A, target.state_indicator_B),
        exact_delta_F=ref["delta_F_B_minus_A"], start_budget=8_000, cap=15_000, num_chains=4,
        initial_position=jnp.array([ref["minimum_A_x1"], 0.0]), log=None,
    )
    assert out["reached"] is False and out["total_energy_evals"] is None
    assert [h["budget"] for h in out["history"]] == [8_000]


def test_stratified_importance_sampling_is_calibrated_and_counts_evaluations():
    """'BG stratified' on a Gaussian target with a wider Gaussian proposal: p_B and ΔF_{B−A}
    against the exact normal CDF values, errors calibrated over seeds (z-scores), and the
    energy evaluations equal the budget (pool draws are flow evaluations only)."""
    from math import erf, log, sqrt

    from physgen.distributions import DiagNormal
    from physgen.targets import Gaussian

    target = Gaussian(np.zeros(2), cov=np.eye(2))
    proposal = DiagNormal(jnp.array([0.2, 0.0]), jnp.array([1.4, 1.2]))
    in_a = lambda x: x[..., 0] < 0.5
    in_b = lambda x: x[..., 0] > 1.5  # the strip in between is the third stratum
    cdf = lambda t: 0.5 * (1 + erf(t / sqrt(2)))
    p_a, p_b = cdf(0.5), 1 - cdf(1.5)
    settings = _compare.SamplerSettings(strat_pool=1 << 16)
    budget = 600
    zs_f, zs_p = [], []
    for seed in range(12):
        run, _ = _compare.run_method(jax.random.key(seed), target, "BG stratified", budget,
                                     flow=proposal, states=(in_a, in_b), settings=settings,
                                     time_it=False)
        assert run.num_energy_evals == budget
        assert run.num_flow_evals == (1 << 16) + budget
        assert sorted(run.info["weighted_A_B_rest"]) == [200, 200, 200]
        est = _compare._estimate(run, in_b, (in_a, in_b))
        zs_p.append((est["estimate"] - p_b) / est["error"])
        d = est["delta_F"]
        zs_f.append((d["value"] + log(p_b / p_a)) / d["stderr"])
    for zs in (np.array(zs_f), np.array(zs_p)):
        assert np.all(np.abs(zs) < 4), zs
        assert abs(zs.mean()) < 3 / sqrt(zs.size) + 0.3, zs
        assert 0.5 < zs.std() < 1.6, zs


def test_stratified_needs_states_and_enough_samples():
    from physgen.distributions import DiagNormal
    from physgen.targets import Gaussian

    target = Gaussian(np.zeros(2), cov=np.eye(2))
    proposal = DiagNormal(jnp.zeros(2), jnp.ones(2))
    with pytest.raises(ValueError, match="needs states"):
        _compare.run_method(jax.random.key(0), target, "BG stratified", 1000, flow=proposal,
                            time_it=False)
    far = (lambda x: x[..., 0] < 0, lambda x: x[..., 0] > 9.0)  # B never drawn
    with pytest.raises(_compare.BudgetTooSmall, match="weighted samples"):
        _compare.run_method(jax.random.key(0), target, "BG stratified", 1000, flow=proposal,
                            states=far, settings=_compare.SamplerSettings(strat_pool=4096),
                            time_it=False)
