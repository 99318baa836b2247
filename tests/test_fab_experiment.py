"""The many-well FAB benchmark runs in --quick mode and writes what it promises."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"


def _load():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("manywell_bench", BENCH / "manywell.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        _load().parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--target" in out and "--seeds" in out


@pytest.mark.slow
def test_manywell_quick(quick_run):
    tmp_path = quick_run("manywell")
    r = json.loads((tmp_path / "results.json").read_text())
    assert abs(r["exact_log_Z"] - 20.586959414147735) < 1e-9  # ManyWell(4): two pairs
    assert set(r["methods"]) == {"reverse_kl", "forward_kl", "fab", "fab_buffer"}
    budget = r["energy_budget"]
    for m, res in r["methods"].items():
        s = res["summary"]
        assert 0 < s["energy_evals"] <= budget, m
        assert 0 < s["ess_fraction_mean"] <= 1
        # 6 iterations of 32 samples already cover all 4 modes of ManyWell(4)
        assert s["modes_visited_mean"] == r["num_modes"] == 4
        assert len(res["seeds"]) == 1 and len(res["curves"][0]) == 1
        for seed in res["seeds"]:
            # log Z by importance sampling from a barely trained flow: right to within its
            # (delta-method) error and 0.5 nats of bias, not an arbitrary finite number
            err, se = seed["log_Z_error"], seed["log_Z_stderr"]
            assert 0 < se < 1 and abs(err) < 5 * se + 0.5, (m, seed)
    # FAB's evaluation count is the exact AIS count, buffer fill included
    per = r["energy_evals_per_ais_iteration"]
    assert per == 32 * (2 + 1 * 2)
    assert r["methods"]["fab"]["summary"]["energy_evals"] % per == 0
    assert (tmp_path / "manywell.png").stat().st_size > 0


def test_segments_continue_one_run_with_its_schedule():
    """Training in two segments (each continuing the last one's state) gives the model of one
    run of both segments' steps, cosine schedule included; the constant schedule leaves the
    optimiser to fit (None)."""
    import equinox as eqx
    import jax
    import numpy as np

    mod = _load()
    args = mod.parse_args(["--quick", "--lr", "0.01", "--schedule", "cosine"])
    target, _, flow_fn, fab_kw = mod.make_problem(args)
    flow, key = flow_fn(jax.random.key(0)), jax.random.key(1)
    budget = 2 * 5 * args.batch

    def final(segments):
        *_, (model, used, _) = mod.train("reverse_kl", args, target, flow, fab_kw, budget, key,
                                         segments)
        return model, used

    (two, used2), (one, used1) = final(2), final(1)
    assert used2 == used1 == budget
    assert not eqx.tree_equal(one, flow)
    for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(two, eqx.is_inexact_array)),
                    jax.tree_util.tree_leaves(eqx.filter(one, eqx.is_inexact_array)),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert mod.optimizer(mod.parse_args(["--lr", "0.01"]), 100) is None


@pytest.mark.slow
def test_gmm40_quick_with_the_affine_flow(run_script):
    """The 40-mode mixture with RealNVP couplings (the many-well quick run shared with the
    paper test trains the spline flow)."""
    flow = "realnvp"
    out = run_script("experiments/benchmarks/manywell.py", "--quick", "--target", "gmm40",
                     "--methods", "fab_buffer", "--flow", flow)
    r = json.loads((out / "results.json").read_text())
    assert r["exact_log_Z"] == 0.0 and r["settings"]["flow"] == flow
    s = r["methods"]["fab_buffer"]["summary"]
    assert 0 < s["ess_fraction_mean"] <= 1 and 0 <= s["fraction_modes_covered_mean"] <= 1
    assert 1 <= s["modes_visited_mean"] <= 40
    (seed,) = r["methods"]["fab_buffer"]["seeds"]
    # exact log Z = 0; a 6-iteration flow misses modes, so only the sign of a gross error
    # is tested: the estimate cannot exceed log Z by more than its error (IS is biased low)
    assert seed["log_Z_error"] < 5 * seed["log_Z_stderr"] + 0.1, seed
    assert (out / "gmm40.png").stat().st_size > 0


def test_first_seed_extends_an_earlier_run_with_the_same_numbers(tmp_path):
    """Seed s gives the same result whether it ran inside a longer run or on its own."""
    mod = _load()
    common = ["--quick", "--methods", "reverse_kl"]
    both = mod.main([*common, "--seeds", "2", "--out", str(tmp_path / "a")])
    alone = mod.main([*common, "--first-seed", "1", "--seeds", "1", "--out", str(tmp_path / "b")])
    s2 = both["methods"]["reverse_kl"]["seeds"]
    s1 = alone["methods"]["reverse_kl"]["seeds"]
    assert [s["seed"] for s in s2] == [0, 1] and [s["seed"] for s in s1] == [1]
    assert s1[0]["log_Z_error"] == s2[1]["log_Z_error"] != s2[0]["log_Z_error"]
    assert s1[0]["ess_fraction"] == s2[1]["ess_fraction"]
