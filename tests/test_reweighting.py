"""Reweighting estimators: unbiasedness and calibrated standard errors over many seeds, exact
special cases, free energies against exact double-well values, float64 stability."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import physgen.reweighting as rw
import physgen.targets as pt

# target N(MU, SIGMA_P²) (unnormalised), proposal N(0, SIGMA_Q²)
MU, SIGMA_P, SIGMA_Q = 0.5, 1.0, 1.6
N, N_SEEDS = 2000, 400


@pytest.fixture(autouse=True)
def _float64():
    """Run every test here in float64 and restore the previous setting afterwards."""
    with jax.enable_x64(True):
        yield


def _gaussian_log_w(key, n=N):
    """Samples of q and their closed-form log weights against p̃(x) = exp(-(x-MU)²/2σ²)."""
    x = SIGMA_Q * jax.random.normal(key, (n,))
    log_p = -0.5 * ((x - MU) / SIGMA_P) ** 2
    log_q = norm.logpdf(x, 0.0, SIGMA_Q)
    return x, rw.log_weights(log_p, log_q)


def _per_seed(fn):
    keys = jax.random.split(jax.random.key(0), N_SEEDS)
    return jax.jit(jax.vmap(lambda k: fn(*_gaussian_log_w(k))))(keys)


def _check_unbiased_and_calibrated(est: rw.Estimate, exact: float, z_max=4.0, tol=0.2):
    values, ses = np.asarray(est.value), np.asarray(est.stderr)
    spread = values.std(ddof=1)
    z = (values.mean() - exact) / (spread / math.sqrt(values.size))
    assert abs(z) < z_max, f"mean {values.mean()} vs exact {exact}: z = {z}"
    ratio = spread / ses.mean()
    assert abs(ratio - 1.0) < tol, f"empirical spread / reported stderr = {ratio}"


def test_expectation_unbiased_and_calibrated():
    est = _per_seed(lambda x, lw: rw.expectation(lw, x))
    _check_unbiased_and_calibrated(est, MU)
    est2 = _per_seed(lambda x, lw: rw.expectation(lw, x**2))
    _check_unbiased_and_calibrated(est2, MU**2 + SIGMA_P**2)


def test_expectation_vector_valued():
    x, lw = _gaussian_log_w(jax.random.key(1))
    f = jnp.stack([x, x**2, jnp.ones_like(x)], axis=1)
    est = rw.expectation(lw, f)
    assert est.value.shape == (3,) and est.stderr.shape == (3,)
    assert float(est.value[2]) == pytest.approx(1.0) and float(est.stderr[2]) < 1e-12
    np.testing.assert_allclose(est.value[0], rw.expectation(lw, x).value, rtol=1e-12)
    with pytest.raises(ValueError, match="f_values must have shape"):
        rw.expectation(lw, x[:-1])


def test_log_Z_unbiased_and_calibrated():
    exact = math.log(math.sqrt(2 * math.pi) * SIGMA_P)
    est = _per_seed(lambda x, lw: rw.log_Z(lw))
    _check_unbiased_and_calibrated(est, exact)


def test_elbo_unbiased_calibrated_and_below_log_Z():
    log_z = math.log(math.sqrt(2 * math.pi) * SIGMA_P)
    kl_qp = (math.log(SIGMA_P / SIGMA_Q) + (SIGMA_Q**2 + MU**2) / (2 * SIGMA_P**2) - 0.5)
    est = _per_seed(lambda x, lw: rw.log_Z_lower_bound(lw))
    _check_unbiased_and_calibrated(est, log_z - kl_qp)
    assert float(jnp.mean(est.value)) < log_z


def test_free_energy_difference_unbiased_and_calibrated():
    p_b = float(norm.cdf(MU / SIGMA_P))
    exact = -math.log(p_b / (1 - p_b))
    est = _per_seed(lambda x, lw: rw.free_energy_difference(lw, x < 0, x > 0))
    _check_unbiased_and_calibrated(est, exact)
    # same, with overlapping, non-complementary states (exercises the covariance term)
    p_a2 = float(norm.cdf(0.3, MU, SIGMA_P))
    p_b2 = 1.0 - float(norm.cdf(-0.4, MU, SIGMA_P))
    est2 = _per_seed(lambda x, lw: rw.free_energy_difference(lw, x < 0.3, x > -0.4))
    _check_unbiased_and_calibrated(est2, -math.log(p_b2 / p_a2))


def test_free_energy_difference_on_exact_double_well_samples():
    dw = pt.DoubleWell()
    ref = dw.references()
    x = dw.sample_exact(jax.random.key(7), 10_000)
    log_w = jnp.zeros(x.shape[0])
    in_a, in_b = dw.state_indicator_A(x), dw.state_indicator_B(x)
    est = rw.free_energy_difference(log_w, in_a, in_b, key=jax.random.key(8), n_boot=300)
    assert abs(float(est.value) - ref["delta_F_B_minus_A"]) < 3 * float(est.stderr)
    n_a, n_b = int(in_a.sum()), int(in_b.sum())
    assert float(est.stderr) == pytest.approx(math.sqrt(1 / n_a + 1 / n_b), rel=1e-10)
    assert float(est.ci_low) < float(est.value) < float(est.ci_high)
    width = float(est.ci_high - est.ci_low)
    assert width == pytest.approx(2 * 1.96 * float(est.stderr), rel=0.25)
    # without a key the interval is the normal one
    plain = rw.free_energy_difference(log_w, in_a, in_b)
    assert float(plain.ci_high - plain.value) == pytest.approx(1.96 * float(plain.stderr),
                                                               rel=1e-3)
    # jit with a static number of bootstrap replicates
    jitted = jax.jit(rw.free_energy_difference, static_argnames=("n_boot",))
    again = jitted(log_w, in_a, in_b, key=jax.random.key(8), n_boot=300)
    np.testing.assert_allclose(again.ci_low, est.ci_low, rtol=1e-12)


def test_free_energy_difference_empty_state_and_shapes():
    log_w = jnp.zeros(10)
    mask = jnp.arange(10) < 5
    assert float(rw.free_energy_difference(log_w, mask, jnp.zeros(10, bool)).value) == jnp.inf
    with pytest.raises(ValueError, match="in_B must have shape"):
        rw.free_energy_difference(log_w, mask, mask[:3])


def test_kish_ess_special_cases():
    n = 1000
    assert float(rw.kish_ess(jnp.zeros(n))) == pytest.approx(n, rel=1e-12)
    assert float(rw.ess_fraction(jnp.full(n, -3.7))) == pytest.approx(1.0, rel=1e-12)
    single = jnp.full(n, -jnp.inf).at[17].set(2.0)
    assert float(rw.kish_ess(single)) == pytest.approx(1.0, rel=1e-12)
    assert float(rw.ess_fraction(single)) == pytest.approx(1.0 / n, rel=1e-12)
    two = jnp.array([0.0, math.log(3.0)])  # weights 1 and 3: ESS = 16 / 10
    assert float(rw.kish_ess(two)) == pytest.approx(1.6, rel=1e-12)
    with pytest.raises(ValueError, match=r"log_w must have shape \(N,\)"):
        rw.kish_ess(jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="must both have shape"):
        rw.log_weights(jnp.zeros(3), jnp.zeros(4))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_stable_for_huge_log_weights(dtype, offset):
    x, lw = _gaussian_log_w(jax.random.key(3), 500)
    x, lw = x.astype(dtype), lw.astype(dtype)
    shifted = lw + jnp.asarray(offset, dtype)
    rtol = 1e-10 if dtype == jnp.float64 else 2e-3
    base_z, z = rw.log_Z(lw), rw.log_Z(shifted)
    assert bool(jnp.isfinite(z.value)) and bool(jnp.isfinite(z.stderr))
    assert float(z.value) == pytest.approx(float(base_z.value) + offset, rel=rtol, abs=1e-8)
    assert float(z.stderr) == pytest.approx(float(base_z.stderr), rel=100 * rtol)
    for fn in (rw.kish_ess, lambda w: rw.expectation(w, x).value,
               lambda w: rw.expectation(w, x).stderr,
               lambda w: rw.free_energy_difference(w, x < 0, x > 0).value,
               lambda w: rw.free_energy_profile(w, x, 10, range=(-4.0, 4.0)).free_energy[5]):
        a, b = fn(lw), fn(shifted)
        assert bool(jnp.isfinite(b)), fn
        assert float(b) == pytest.approx(float(a), rel=100 * rtol)
    bound = rw.log_Z_lower_bound
    assert float(bound(shifted).value) == pytest.approx(float(bound(lw).value) + offset,
                                                        rel=rtol)


def test_free_energy_profile_against_exact_double_well():
    dw = pt.DoubleWell()
    n = 50_000
    x = dw.sample_exact(jax.random.key(11), n)
    edges = jnp.linspace(-3.0, 3.0, 31)
    prof = rw.free_energy_profile(jnp.zeros(n), x[:, 0], edges)
    assert prof.free_energy.shape == (30,) and prof.centres.shape == (30,)
    assert float(jnp.sum(prof.probability)) == pytest.approx(1.0, rel=1e-12)  # all inside
    # exact bin free energies -log(∫_bin p / width) from the exact profile
    exact = []
    for a, b in zip(np.asarray(edges[:-1]), np.asarray(edges[1:]), strict=True):
        g = np.linspace(a, b, 401)
        exact.append(-math.log(np.trapezoid(np.exp(-dw.free_energy_profile(g)), g) / (b - a)))
    exact = np.array(exact)
    ok = np.asarray(prof.probability) * n > 30
    z = (np.asarray(prof.free_energy)[ok] - exact[ok]) / np.asarray(prof.stderr)[ok]
    assert np.max(np.abs(z)) < 4.5
    # with importance weights from a Gaussian proposal, same answer within errors
    q = pt.Gaussian(jnp.array([-0.5]), cov=jnp.array([[2.25]]))
    y = q.sample_exact(jax.random.key(12), n)
    one_d = pt.DoubleWell(dim=1)
    lw = rw.log_weights(jax.vmap(one_d.log_density)(y),
                        -jax.vmap(q.energy)(y) - q.log_Z())
    prof2 = rw.free_energy_profile(lw, y[:, 0], 30, range=(-3.0, 3.0))
    ok2 = np.asarray(prof2.probability) > 1e-3
    z2 = (np.asarray(prof2.free_energy)[ok2] - exact[ok2]) / np.asarray(prof2.stderr)[ok2]
    assert np.max(np.abs(z2)) < 4.5
    assert float(jnp.sum(prof2.probability)) == pytest.approx(1.0, rel=1e-9)
    inner = rw.free_energy_profile(lw, y[:, 0], 10, range=(-1.0, 1.0))  # most mass outside
    outside = float(rw.expectation(lw, jnp.abs(y[:, 0]) > 1.0).value)
    assert float(jnp.sum(inner.probability)) == pytest.approx(1.0 - outside, rel=1e-9)


def test_free_energy_profile_empty_bins_and_edges():
    cv = jnp.array([0.1, 0.2, 0.9, 1.0, 1.0])
    prof = rw.free_energy_profile(jnp.zeros(5), cv, jnp.array([0.0, 0.5, 0.75, 1.0]))
    np.testing.assert_allclose(prof.probability, [0.4, 0.0, 0.6])  # last bin is closed
    assert float(prof.free_energy[1]) == jnp.inf and bool(jnp.isnan(prof.stderr[1]))
    assert bool(jnp.all(jnp.isfinite(prof.stderr[jnp.array([0, 2])])))
    # equal weights: binomial error of the bin probability
    assert float(prof.probability_stderr[0]) == pytest.approx(math.sqrt(0.4 * 0.6 / 5))
    with pytest.raises(ValueError, match="range"):
        rw.free_energy_profile(jnp.zeros(5), cv, 4)


def test_bootstrap_generic():
    x = jax.random.normal(jax.random.key(4), (4000,)) * 2.0 + 1.0
    draws = rw.bootstrap(jax.random.key(5), jnp.mean, x, n_boot=400)
    assert draws.shape == (400,)
    assert float(draws.std()) == pytest.approx(2.0 / math.sqrt(4000), rel=0.15)
    # several arrays are resampled jointly; pytree outputs are stacked
    out = rw.bootstrap(jax.random.key(6), lambda a, b: {"d": jnp.mean(a - b)}, x, x, n_boot=50)
    np.testing.assert_allclose(out["d"], 0.0, atol=1e-12)
    lo, hi = rw.percentile_interval(draws)
    assert float(lo) < float(jnp.mean(x)) < float(hi)
    with pytest.raises(ValueError, match="same leading length"):
        rw.bootstrap(jax.random.key(0), jnp.mean, x, x[:10])
