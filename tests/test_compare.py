"""The budget-matched sampler comparison (physgen.samplers), stratified importance sampling
(physgen.reweighting) and the benchmark script built on them."""

from __future__ import annotations

import json
import math
import sys
from math import erf, log, sqrt
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import physgen
from physgen import reweighting as rw, samplers as smp
from physgen.distributions import DiagNormal
from physgen.flows import neural_spline_flow
from physgen.objectives import ReverseKL
from physgen.samplers import (
    HMC,
    NUTS,
    BudgetPolicy,
    BudgetTooSmall,
    FlowIndependenceMetropolis,
    ImportanceSampler,
    StratifiedImportanceSampler,
    TemperedSMC,
    compare_samplers,
    estimate_run,
    evals_to_reach,
    render_comparison,
    run_with_budget,
)
from physgen.targets import DoubleWell, Gaussian

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "benchmarks"))

import ess_per_evaluation  # noqa: E402

GAUSS = Gaussian(np.zeros(2), cov=np.eye(2))
IN_A = lambda x: x[..., 0] < 0.5
IN_B = lambda x: x[..., 0] > 1.5  # the strip in between is the third stratum
_cdf = lambda t: 0.5 * (1 + erf(t / sqrt(2)))
P_A, P_B = _cdf(0.5), 1 - _cdf(1.5)


@pytest.mark.slow
def test_quick_benchmark_writes_one_row_per_method_per_target(quick_run):
    """The paper's quick run (double well; HMC, PT and both importance samplers; the
    evaluations to reach se(ΔF) = 0.05 kT up to 4,000): every row on the same budget."""
    out = quick_run("ess_per_evaluation")
    on_disk = json.loads((out / "results.json").read_text())
    chosen = on_disk["config"]["methods"]
    assert set(on_disk["targets"]) == {"double_well"}
    for name, entry in on_disk["targets"].items():
        rows = entry["table"]
        assert [r["key"] for r in rows] == chosen, name
        for r in rows:
            evals = r["num_energy_evals"]
            assert isinstance(evals, int) and evals > 0, (name, r)
            assert r["total_energy_evals"] == evals + r["train_energy_evals"]
            if r["key"] in ess_per_evaluation.BG_METHODS:
                assert r["train_energy_evals"] > 0
            else:
                assert r["train_energy_evals"] == 0
            assert r["wall_time_s"] is not None and r["wall_time_s"] >= 0
        # every method got the same budget (up to what a whole transition costs)
        budget = on_disk["config"]["budget"]
        assert all(0.9 * budget <= r["num_energy_evals"] <= budget for r in rows), name
        reach = {e["method"]: e for e in entry["evals_to_reach"]}
        assert set(reach) == set(chosen)
        for e in reach.values():  # reached, or not within the cap, never beyond it
            assert (e["sampling_energy_evals"] or 0) <= e["cap"] == 4000
    for ext in ("png", "pdf"):
        assert (out / f"ess_per_1k_evals.{ext}").stat().st_size > 0


def test_summary_over_seeds_counts_failures_and_bootstraps_the_ratio():
    """Median with unreached seeds above the cap, min–max of the reached, and the ratio of
    medians with a bootstrap interval that holds it."""
    pt = [1_700_000, 2_100_000, 1_800_000, 2_100_000, None]
    bg = [8_000, 11_000, 50_000, 9_000, 17_000]

    def reach(method, total):
        return {"method": method, "reached": total is not None, "total_energy_evals": total,
                "sampling_energy_evals": total, "train_energy_evals": 0, "cap": 6_000_000,
                "se_target": 0.05}

    def summarise(per_seed):
        return smp.reach_over_seeds(per_seed, methods=("HMC", "PT", "BG stratified"),
                                    proposals={"BG stratified"})

    per_seed = [{"seed": i, "evals_to_reach": [reach("PT", p), reach(
        "BG stratified", b)]} for i, (p, b) in enumerate(zip(pt, bg, strict=True))]
    out = summarise(per_seed)
    by = {r["method"]: r for r in out["reach_over_seeds"]}
    assert by["PT"]["median"] == 2_100_000 and by["PT"]["not_reached"] == 1
    assert (by["PT"]["min"], by["PT"]["max"]) == (1_700_000, 2_100_000)
    assert by["BG stratified"]["median"] == 11_000 and by["BG stratified"]["not_reached"] == 0
    best = out["best_reach_ratio"]
    assert best["mcmc"] == "PT" and best["bg"] == "BG stratified"
    assert best["median_ratio"] == pytest.approx(2_100_000 / 11_000)
    lo, hi = best["interval_95"]
    assert lo < best["median_ratio"] < hi
    assert best["per_seed_min"] == pytest.approx(1_800_000 / 50_000)
    assert best["per_seed_max"] == pytest.approx(2_100_000 / 9_000)
    # most seeds unreached: no median, no ratio
    text = smp.render_reach(out)
    assert "PT / BG stratified: 191×" in text and "not reached 1/5" in text
    # most seeds unreached: no median, no ratio
    per_seed = [{"seed": i, "evals_to_reach": [reach("PT", 2_000_000), reach(
        "BG stratified", None if i else 9_000)]} for i in range(3)]
    out = summarise(per_seed)
    assert out["reach_over_seeds"][1]["median"] is None and out["best_reach_ratio"] is None
    with pytest.raises(ValueError, match=r"\['NUTS'\] are not in methods"):
        summarise([{"seed": 0, "evals_to_reach": [reach("NUTS", 1)]}])


def test_trapped_hmc_vs_reweighted_boltzmann_generator():
    """HMC started in the left well at a small budget never sees B or is many standard errors
    off; a briefly trained BG, reweighted, gets p_B within 3 standard errors. The BG is trained
    as the main job trains it (reverse KL plus the self-normalised forward-KL gradient): by
    reverse KL alone, 400 steps leave the ESS anywhere between 4 % and 95 % with the key and
    the compiler."""
    target = DoubleWell(dim=2)
    ref = target.references()
    assert ref["p_B"] == pytest.approx(0.03293, abs=1e-5)
    states = (target.state_indicator_A, target.state_indicator_B)
    exact = {"observable": ref["p_B"], "delta_F": ref["delta_F_B_minus_A"]}

    steps, batch = 400, 128
    flow = neural_spline_flow(jax.random.key(1), 2, num_layers=3, width=24, num_bins=8,
                              interval=6.0)
    fitted = physgen.fit(
        jax.random.key(2), flow, ReverseKL(target, batch, path_gradient=True, forward_weight=1.0),
        steps=steps,
        optimizer=optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=0.01)),
        progress=False, chunk_size=100,
    )
    samplers = {"HMC": HMC(0.1, 10), "BG reweighted": ImportanceSampler(fitted[0])}
    rows = compare_samplers(
        jax.random.key(3), target, samplers, energy_budget=20_000, num_chains=4,
        flow_train_evals=steps * batch, states=states, exact=exact,
        initial_position=jnp.array([ref["minimum_A_x1"], 0.0]), log=None,
    )
    hmc, bg = rows
    assert hmc["num_energy_evals"] <= 20_000 and bg["num_energy_evals"] == 20_000
    assert hmc["train_energy_evals"] == 0 and bg["train_energy_evals"] == steps * batch
    assert bg["total_energy_evals"] == 20_000 + steps * batch

    if hmc["chains_visiting_B"] == 0:
        assert hmc["estimate"] == 0.0 and hmc["ess"] is None
        assert hmc["delta_F"]["value"] == math.inf
    else:
        assert abs(hmc["z_score"]) > 5, hmc

    assert bg["error"] > 0 and abs(bg["z_score"]) < 3, bg
    assert abs(bg["delta_F"]["z_score"]) < 3, bg
    assert bg["ess"] > 10_000  # Kish ESS of the 20,000 reweighted flow samples

    text = render_comparison(rows)
    assert "BG reweighted" in text and "HMC" in text


def test_evals_to_reach_reports_not_reached_within_cap():
    """A trapped HMC cannot reach se(ΔF) ≤ 0.05 kT: reported honestly at a small cap."""
    target = DoubleWell(dim=2)
    ref = target.references()
    out = evals_to_reach(
        jax.random.key(0), target, HMC(0.1, 10), name="HMC",
        states=(target.state_indicator_A, target.state_indicator_B),
        exact_delta_F=ref["delta_F_B_minus_A"], start_budget=8_000, cap=15_000, num_chains=4,
        initial_position=jnp.array([ref["minimum_A_x1"], 0.0]), log=None,
    )
    assert out["method"] == "HMC"
    assert out["reached"] is False and out["total_energy_evals"] is None
    assert [h["budget"] for h in out["history"]] == [8_000]


def test_evals_to_reach_stops_at_the_second_consecutive_budget_meeting_the_criterion():
    """The stopping rule: the search ends at the first budget whose run and the run before
    it both meet the criterion (one lucky budget is not enough), and reports that budget."""
    sampler = StratifiedImportanceSampler(SMALL_B, (IN_A, IN_B), pool_size=8192,
                                          batch_size=8192)
    for seed in range(3):
        out = evals_to_reach(jax.random.key(seed), GAUSS, sampler, states=(IN_A, IN_B),
                             exact_delta_F=-log(P_B / P_A), se_target=0.08, start_budget=200,
                             factor=1.25, cap=100_000, log=None)
        met = [h["meets_criterion"] for h in out["history"]]
        assert out["reached"] and out["consecutive"] == 2
        assert met[-2:] == [True, True]
        assert not any(a and b for a, b in zip(met[:-2], met[1:-1], strict=True)), met
        assert out["sampling_energy_evals"] == out["history"][-1]["energy_evals"]
        assert all(h["stderr"] <= 0.08 for h in out["history"][-2:])
        assert "pool" in out["history"][-1] and out["history"][-1]["short"] == {}
    with pytest.raises(ValueError, match="consecutive"):
        evals_to_reach(jax.random.key(0), GAUSS, sampler, states=(IN_A, IN_B),
                       exact_delta_F=1.0, consecutive=0)


# ----------------------------------------------------------------------------- budgets
def test_each_kind_of_sampler_spends_the_budget_it_is_given():
    """Fixed cost per transition: init + warm-up overhead + transitions fill the budget to
    within one transition per chain; variable cost and particle runs overshoot by at most
    one chunk or run; importance samplers spend it exactly; proposal chains cost flow
    evaluations too. A budget that cannot pay for warm-up is refused."""
    budget, chains, policy = 3000, 2, BudgetPolicy(num_particles=16)
    proposal = DiagNormal(jnp.zeros(2), 1.3 * jnp.ones(2))
    x0 = jnp.array([0.3, -0.2])

    hmc = run_with_budget(jax.random.key(0), HMC(0.2, 3), GAUSS, budget, num_chains=chains,
                          initial_position=x0, policy=policy)
    assert budget - chains * 3 < hmc.num_energy_evals <= budget
    warm = hmc.info["num_warmup"]
    assert hmc.num_energy_evals == chains * (2 + 3 * (warm + hmc.samples.shape[1]))
    assert hmc.samples.shape[0] == chains and len(hmc.info["step_size"]) == chains
    assert hmc.log_w is None and not hmc.independent_runs

    imh = run_with_budget(jax.random.key(1), FlowIndependenceMetropolis(proposal), GAUSS,
                          budget, num_chains=chains, policy=policy)
    assert imh.num_energy_evals == budget and imh.num_flow_evals == budget

    nuts = run_with_budget(jax.random.key(2), NUTS(0.5), GAUSS, budget, num_chains=chains,
                           initial_position=x0, policy=policy)
    assert budget // 2 < nuts.num_energy_evals < 2 * budget
    assert nuts.info["mean_evals_per_transition"] >= 1

    smc = run_with_budget(jax.random.key(3), TemperedSMC(HMC(0.3, 2, adapt=False),
                                                         num_mcmc_steps=2),
                          GAUSS, budget, policy=policy)
    assert smc.independent_runs and smc.samples.shape[1:] == (16, 2)
    assert smc.samples.shape[0] == smc.info["num_runs"] >= 2
    assert budget // 2 < smc.num_energy_evals < 2 * budget

    weighted = run_with_budget(jax.random.key(4), ImportanceSampler(proposal, batch_size=1024),
                               GAUSS, budget)
    assert weighted.num_energy_evals == budget == weighted.log_w.shape[0]

    with pytest.raises(BudgetTooSmall, match="warm-up"):
        run_with_budget(jax.random.key(0), HMC(0.2, 3), GAUSS, 100, num_chains=chains)


def test_bad_inputs_raise_before_any_sampling():
    with pytest.raises(TypeError, match="AbstractSampler"):
        run_with_budget(jax.random.key(0), "HMC", GAUSS, 1000)
    with pytest.raises(ValueError, match="energy_budget"):
        run_with_budget(jax.random.key(0), HMC(0.2, 3), GAUSS, 0)
    with pytest.raises(TypeError, match="'HMC'"):
        compare_samplers(jax.random.key(0), GAUSS, {"HMC": "HMC"}, energy_budget=1000,
                         states=(IN_A, IN_B))
    with pytest.raises(ValueError, match="observable or states"):
        compare_samplers(jax.random.key(0), GAUSS, {"HMC": HMC(0.2, 3)}, energy_budget=1000)
    with pytest.raises(ValueError, match="unique"):
        compare_samplers(jax.random.key(0), GAUSS, [("a", HMC(0.2, 3)), ("a", HMC(0.1, 3))],
                         energy_budget=1000, states=(IN_A, IN_B))
    with pytest.raises(ValueError, match="pair of indicator functions"):
        evals_to_reach(jax.random.key(0), GAUSS, HMC(0.2, 3), states=IN_B, exact_delta_F=1.0)
    with pytest.raises(ValueError, match="min_runs"):
        BudgetPolicy(min_runs=1)


# ----------------------------------------------------------------------------- stratified
def test_stratified_importance_sampling_is_calibrated_and_counts_evaluations():
    """Stratified sampling on a Gaussian target with a wider Gaussian proposal: p_B and
    ΔF_{B−A} against the exact normal CDF values, errors calibrated over seeds (z-scores),
    and the energy evaluations equal the budget (pool draws are flow evaluations only)."""
    proposal = DiagNormal(jnp.array([0.2, 0.0]), jnp.array([1.4, 1.2]))
    sampler = StratifiedImportanceSampler(proposal, (IN_A, IN_B), pool_size=1 << 16)
    budget = 600
    zs_f, zs_p = [], []
    for seed in range(12):
        run = run_with_budget(jax.random.key(seed), sampler, GAUSS, budget)
        assert run.num_energy_evals == budget
        assert run.num_flow_evals == (1 << 16) + budget
        assert sorted(run.info["weighted_counts"]) == [200, 200, 200]
        est = estimate_run(run, IN_B, (IN_A, IN_B))
        zs_p.append((est["estimate"] - P_B) / est["error"])
        d = est["delta_F"]
        zs_f.append((d["value"] + log(P_B / P_A)) / d["stderr"])
    for zs in (np.array(zs_f), np.array(zs_p)):
        assert np.all(np.abs(zs) < 4), zs
        assert abs(zs.mean()) < 3 / sqrt(zs.size) + 0.3, zs
        assert 0.5 < zs.std() < 1.6, zs


# a proposal with little mass in B: q_B = 1 − Φ(2.5) ≈ 0.0062 (p_B ≈ 0.067)
SMALL_B = DiagNormal(jnp.array([-1.0, 0.0]), jnp.array([1.0, 1.0]))


def _stratified_df(sampler, budget, seed):
    run = run_with_budget(jax.random.key(seed), sampler, GAUSS, budget)
    return run, estimate_run(run, IN_B, (IN_A, IN_B))["delta_F"]


def test_stratified_error_shrinks_with_budget_when_the_flow_starves_a_state():
    """The pool grows until B holds its share, so se(ΔF) falls as 1/√budget (×16 budget:
    ×1/4 error). The control: a pool capped at its first 8,192 draws (~51 members of B)
    names B's shortfall and its error stops falling."""
    grow = StratifiedImportanceSampler(SMALL_B, (IN_A, IN_B), pool_size=8192, batch_size=8192)
    capped = StratifiedImportanceSampler(SMALL_B, (IN_A, IN_B), pool_size=8192,
                                         max_pool_size=8192, batch_size=8192)
    small, large = 120, 1920
    ratios, capped_ratios = [], []
    for seed in range(3):
        _, d0 = _stratified_df(grow, small, seed)
        run, d1 = _stratified_df(grow, large, seed)
        assert run.info["short"] == {}
        assert run.info["weighted_counts"][1] == large // 3  # B got its full share
        assert run.info["pool"] > 8192 and run.info["pool_counts"][1] >= large // 3
        assert run.num_flow_evals == run.info["pool"] + large
        ratios.append(d1["stderr"] / d0["stderr"])
        _, c0 = _stratified_df(capped, small, seed)
        crun, c1 = _stratified_df(capped, large, seed)
        (lack,) = crun.info["short"].values()
        # the share B would get from an unlimited pool (≥ a third: the strip is capped too)
        assert list(crun.info["short"]) == [1]
        assert lack + crun.info["pool_counts"][1] >= large // 3
        assert "stratum 1 short by" in compare_samplers(
            jax.random.key(seed), GAUSS, {"capped": capped}, energy_budget=large,
            states=(IN_A, IN_B), log=None)[0]["note"]
        capped_ratios.append(c1["stderr"] / c0["stderr"])
    assert 0.15 < np.mean(ratios) < 0.35, ratios  # 1/√16 = 0.25
    assert np.mean(capped_ratios) > 0.45, capped_ratios


def test_stratified_errors_calibrated_with_a_starved_state():
    """z = (ΔF̂ − ΔF_exact)/se over 16 seeds with the pool grown for B: mean ≈ 0, sd ≈ 1."""
    sampler = StratifiedImportanceSampler(SMALL_B, (IN_A, IN_B), pool_size=8192,
                                          batch_size=8192)
    zs = []
    for seed in range(16):
        _, d = _stratified_df(sampler, 900, 100 + seed)
        zs.append((d["value"] + log(P_B / P_A)) / d["stderr"])
    zs = np.array(zs)
    assert np.all(np.abs(zs) < 4), zs
    assert abs(zs.mean()) < 3 / sqrt(zs.size) + 0.2, zs
    assert 0.6 < zs.std(ddof=1) < 1.5, zs


def test_stratified_needs_states_and_enough_samples():
    proposal = DiagNormal(jnp.zeros(2), jnp.ones(2))
    with pytest.raises(TypeError, match="states"):
        StratifiedImportanceSampler(proposal, ())
    far = (lambda x: x[..., 0] < 0, lambda x: x[..., 0] > 9.0)  # B never drawn
    with pytest.raises(BudgetTooSmall, match="weighted samples"):
        run_with_budget(jax.random.key(0),
                        StratifiedImportanceSampler(proposal, far, pool_size=4096,
                                                    max_pool_size=1 << 15), GAUSS, 1000)
    with pytest.raises(ValueError, match="max_pool_size"):
        StratifiedImportanceSampler(proposal, far, pool_size=4096, max_pool_size=1024)


def test_stratified_estimate_reduces_to_reweighting_and_has_the_stated_covariance():
    """One stratum: the self-normalised estimate and its delta-method error. Several: the
    per-stratum log Z and Cov(log Z_S, log Z_T) = δ_ST Var(w_S)/(n_S w̄_S²) + (δ_ST/q_S − 1)/M
    by hand."""
    rng = np.random.default_rng(0)
    log_w = rng.normal(size=500)
    f = rng.normal(size=500)
    one = rw.stratified_estimate(log_w, np.zeros(500, int), np.array([10_000]), f)
    ref = rw.expectation(jnp.asarray(log_w), jnp.asarray(f))
    assert one.mean == pytest.approx(float(ref.value), rel=1e-5)
    assert math.sqrt(one.mean_var) == pytest.approx(float(ref.stderr), rel=1e-4)
    assert one.log_Z[0] == pytest.approx(np.log(np.mean(np.exp(log_w))))

    strata = np.repeat([0, 1, 2], [200, 250, 50])
    counts, M = np.array([6000, 3000, 1000]), 10_000
    s = rw.stratified_estimate(log_w, strata, counts, f)
    w = np.exp(log_w)
    for k in range(3):
        wk = w[strata == k]
        assert s.log_Z[k] == pytest.approx(np.log(counts[k] / M * wk.mean()))
        assert s.log_Z_cov[k, k] == pytest.approx(
            wk.var(ddof=1) / (wk.size * wk.mean() ** 2) + (M / counts[k] - 1) / M)
    assert s.log_Z_cov[0, 1] == pytest.approx(-1 / M)
    value, stderr = s.free_energy_difference(0, 1)
    assert value == pytest.approx(-(s.log_Z[1] - s.log_Z[0]))
    assert stderr**2 == pytest.approx(s.log_Z_cov[0, 0] + s.log_Z_cov[1, 1] + 2 / M)
    # a stratum without weighted draws has no estimate
    empty = rw.stratified_estimate(log_w[:200], strata[:200], counts)
    assert np.isnan(empty.log_Z[1]) and math.isnan(empty.mean)
    with pytest.raises(ValueError, match="strata must lie"):
        rw.stratified_estimate(log_w, strata + 1, counts)
    with pytest.raises(FloatingPointError):
        rw.stratified_estimate(np.full(3, np.nan), np.zeros(3, int), counts)
