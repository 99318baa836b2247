"""Diagnostics: τ_int of AR(1) processes, Monte Carlo errors, ESS and R-hat, the table."""

from __future__ import annotations

import json
import warnings

import blackjax
import jax
import numpy as np
import pytest
from scipy.signal import lfilter

from physgen.diagnostics import (
    ShortChainWarning,
    autocorrelation,
    comparison_table,
    effective_sample_size,
    ess_bulk,
    ess_tail,
    integrated_autocorrelation_time,
    mcse,
    mean_and_mcse,
    render_table,
    rhat,
)


def ar1(rng, rho, num_chains, num_samples, burn=2000):
    """Stationary AR(1) ``x_t = ρ x_{t-1} + ε_t``: ``Var = 1/(1-ρ²)``, ``τ = (1+ρ)/(1-ρ)``."""
    e = rng.normal(size=(num_chains, num_samples + burn))
    return lfilter([1.0], [1.0, -rho], e, axis=1)[:, burn:]


@pytest.mark.parametrize("method", ["geyer", "wolff", "sokal"])
@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8])
def test_tau_int_of_ar1_within_its_error(rho, method):
    x = ar1(np.random.default_rng(7), rho, 4, 25_000)
    res = integrated_autocorrelation_time(x, method=method)
    exact = (1 + rho) / (1 - rho)
    assert res.error > 0 and res.window >= 1
    # 4 standard errors: a false failure has probability 6e-5 per case, 6e-4 for all nine
    assert abs(res.tau - exact) < 4 * res.error, (res, exact)
    # Madras-Sokal error formula
    np.testing.assert_allclose(res.error, res.tau * np.sqrt(2 * (2 * res.window + 1) / x.size))


def test_autocorrelation_of_ar1():
    rho = 0.7
    r = autocorrelation(ar1(np.random.default_rng(1), rho, 2, 50_000))
    assert r[0] == pytest.approx(1.0)
    np.testing.assert_allclose(r[1:4], rho ** np.arange(1, 4), atol=0.01)


def test_mcse_matches_scatter_of_independent_chain_means():
    rho, n = 0.6, 4000
    x = ar1(np.random.default_rng(2), rho, 300, n)
    errors = np.array([mcse(c) for c in x[:50]])
    spread = x.mean(1).std(ddof=1)
    analytic = np.sqrt((1 + rho) / (1 - rho) / (1 - rho**2) / n)
    np.testing.assert_allclose(errors.mean(), analytic, rtol=0.05)
    np.testing.assert_allclose(spread, analytic, rtol=0.15)
    # multi-chain: 4 chains pooled as replicas give the error of the pooled mean
    mean, err = mean_and_mcse(x[:4])
    assert mean == pytest.approx(x[:4].mean())
    np.testing.assert_allclose(err, analytic / 2, rtol=0.15)


def test_constant_observable_and_validation():
    for method in ("geyer", "wolff"):
        res = integrated_autocorrelation_time(np.ones(100), method=method)
        assert res.tau == 1.0 and res.error == 0.0
        assert mcse(np.ones((2, 50)), method=method) == 0.0
    with pytest.raises(ValueError, match="shape"):
        integrated_autocorrelation_time(np.zeros((2, 3, 4)), method="wolff")  # scalar only
    with pytest.raises(ValueError, match="at least 4 samples"):
        integrated_autocorrelation_time(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="1 of 5"):
        mcse(np.array([0.0, 1.0, np.nan, 2.0, 3.0]))
    with pytest.raises(ValueError, match="method"):
        integrated_autocorrelation_time(np.zeros(10), method="bartlett")


@pytest.mark.parametrize("rho", [-0.95, -0.5, 0.0, 0.9, 0.999])
@pytest.mark.parametrize("shape", [(1, 7), (4, 100), (3, 1001), (2, 50, 3)])
def test_geyer_tau_is_blackjax_n_over_ess(rho, shape):
    """The default τ is N / blackjax.diagnostics.effective_sample_size (Geyer's initial
    monotone sequence, Stan's multi-chain form), to rounding, in every branch: antithetic
    chains at the 1/log10(N) floor, chains too short to cut the sum, extra dimensions."""
    x = lfilter([1.0], [1.0, -rho], np.random.default_rng(4).normal(size=shape), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortChainWarning)
        res = integrated_autocorrelation_time(x)
    with jax.enable_x64(True):
        ess = np.asarray(blackjax.diagnostics.effective_sample_size(jax.numpy.asarray(x)))
    np.testing.assert_allclose(res.tau, x.shape[0] * x.shape[1] / ess, rtol=1e-10)


def test_vector_observables_give_one_error_per_component():
    x = ar1(np.random.default_rng(9), 0.5, 2, 3000)
    stacked = np.stack([x, -2 * x, x + 1], axis=-1)  # (2, 3000, 3)
    mean, err = mean_and_mcse(stacked)
    assert mean.shape == err.shape == (3,)
    np.testing.assert_allclose(err, mcse(x) * np.array([1, 2, 1]), rtol=1e-10)
    np.testing.assert_allclose(mean, [x.mean(), -2 * x.mean(), x.mean() + 1], rtol=1e-10)


def _exceedance(x, errors):
    """Fraction of per-chain means of zero-mean chains ``(R, S)`` beyond ±2 of their MCSE."""
    return float(np.mean(np.abs(x.mean(1)) > 2 * np.asarray(errors)))


def test_wolff_window_fails_on_negatively_correlated_chains_and_says_so():
    """AR(1) with ρ = −0.5 (τ = 1/3): the window stops at W = 1 and the error of Wolff's
    method is far too small; Geyer's sum keeps its negative lags. 1000 chains: the binomial
    standard deviation of the fraction beyond ±2 is 0.7%, so 2%-8% holds Geyer's value with
    a false-failure rate below 1e-4; Wolff's measured value is 0.7."""
    x = ar1(np.random.default_rng(11), -0.5, 1000, 1000)
    geyer = _exceedance(x, errors=mcse(x.T[None]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wolff_errors = [mcse(c, method="wolff") for c in x]
    assert any("use method='geyer'" in str(w.message) for w in caught)
    wolff = _exceedance(x, errors=wolff_errors)
    assert 0.02 < geyer < 0.08 and wolff > 0.3, (geyer, wolff)


def test_wolff_window_is_better_for_short_strongly_correlated_chains():
    """Where the old window is kept: AR(1) with ρ = 0.9 (τ = 19) in chains of 100 draws
    (S ≈ 5τ). Both underestimate the error (a ShortChainWarning says so), Wolff's bias
    correction of Γ less: measured fractions beyond ±2 are 0.16 (Wolff) and 0.20 (Geyer),
    paired difference −0.041 ± 0.003 over 4000 chains. Asserted: Wolff lower by more than
    four standard errors of the paired difference (false failure ~1e-20) and closer to the
    exact variance of the mean."""
    rho, s = 0.9, 100
    x = ar1(np.random.default_rng(3), rho, 4000, s)
    with pytest.warns(ShortChainWarning, match="shorter than 50 tau"):
        geyer = mcse(x.T[None])
    wolff = np.array([mcse(c, method="wolff") for c in x])
    outside_g = np.abs(x.mean(1)) > 2 * geyer
    outside_w = np.abs(x.mean(1)) > 2 * wolff
    d = outside_w.astype(float) - outside_g
    assert d.mean() + 4 * d.std(ddof=1) / np.sqrt(d.size) < 0, d.mean()
    t = np.arange(1, s)
    exact_var = (s + 2 * np.sum((s - t) * rho**t)) / (1 - rho**2) / s**2
    assert abs(np.mean(wolff**2) / exact_var - 1) < abs(np.mean(geyer**2) / exact_var - 1)


def test_ess_of_iid_samples_is_n():
    x = np.random.default_rng(3).normal(size=(4, 1000))
    for fn, rtol in [(ess_bulk, 0.15), (ess_tail, 0.25), (effective_sample_size, 0.15)]:
        np.testing.assert_allclose(float(fn(x)), 4000, rtol=rtol, err_msg=fn.__name__)


def test_ess_of_correlated_samples_is_n_over_tau():
    rho = 0.5
    x = ar1(np.random.default_rng(5), rho, 4, 1000)  # same shape as above: no recompilation
    np.testing.assert_allclose(float(ess_bulk(x)), x.size * (1 - rho) / (1 + rho), rtol=0.2)


def test_rhat():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 1000))
    assert float(rhat(x)) < 1.01
    shifted = x + np.array([0.0, 0.0, 1.0, 1.0])[:, None]
    assert float(rhat(shifted)) > 1.1


def test_comparison_table():
    rng = np.random.default_rng(8)
    obs = ar1(rng, 0.5, 4, 2000)
    rows = [
        {"method": "HMC", "observable": obs, "num_energy_evals": 40_000, "wall_time": 2.0,
         "exact": 0.0},
        {"method": "flow + IS", "estimate": 0.1, "error": 0.05, "ess": 250.0,
         "num_samples": 1000, "num_energy_evals": 1000, "wall_time": 0.5, "exact": 0.0},
    ]
    with_khat = comparison_table([{**rows[1], "pareto_khat": 0.42}])[0]
    assert with_khat["pareto_khat"] == 0.42 and "k̂" in render_table([with_khat])
    table = comparison_table(rows)
    json.dumps(table)  # JSON-ready
    hmc, flow = table
    mean, err = mean_and_mcse(obs)
    assert hmc["estimate"] == pytest.approx(mean) and hmc["error"] == pytest.approx(err)
    assert hmc["num_samples"] == 8000
    tau = integrated_autocorrelation_time(obs).tau
    assert hmc["ess"] == pytest.approx(8000 / tau)
    assert hmc["pareto_khat"] is None and flow["pareto_khat"] is None
    assert hmc["ess_per_1k_evals"] == pytest.approx(hmc["ess"] / 40.0)
    assert hmc["ess_per_s"] == pytest.approx(hmc["ess"] / 2.0)
    assert hmc["z_score"] == pytest.approx(mean / err)
    assert flow["z_score"] == pytest.approx(2.0) and flow["ess_per_1k_evals"] == 250.0
    no_exact = comparison_table([{k: v for k, v in rows[1].items() if k != "exact"}])[0]
    assert no_exact["exact"] is None and no_exact["z_score"] is None
    md = render_table(table)
    assert md.splitlines()[0].startswith("| method") and "flow + IS" in md
    assert len(md.splitlines()) == 4
    text = render_table(table, fmt="text")
    assert "ESS / 1k evals" in text and "HMC" in text
    with pytest.raises(ValueError, match="observable"):
        comparison_table([{"method": "x", "num_energy_evals": 1, "wall_time": 1.0}])


def test_a_chain_shorter_than_its_autocorrelation_warns():
    """A random walk of 100 steps (τ infinite): Sokal's window W ≥ c·τ(W) is never reached,
    Geyer's τ exceeds S/50, and both say that τ is underestimated."""
    x = np.cumsum(np.random.default_rng(1).normal(size=100))
    with pytest.warns(ShortChainWarning, match="no window found"):
        res = integrated_autocorrelation_time(x, method="sokal")
    assert res.window == 50  # the largest window tried, S/2
    with pytest.warns(ShortChainWarning, match="shorter than 50 tau"):
        integrated_autocorrelation_time(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a long, fast-mixing chain finds its window quietly
        for method in ("geyer", "sokal"):
            integrated_autocorrelation_time(ar1(np.random.default_rng(3), 0.5, 1, 20_000),
                                            method=method)
