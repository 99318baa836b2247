"""Metrics: test NLL against an exact entropy, MMD against its closed form and as a test,
precision/recall, 1-D Wasserstein and energy-distribution distances."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from physgen.distributions import StandardNormal
from physgen.metrics import (
    NoDensityError,
    energy_distances,
    mmd2,
    mmd_test,
    precision_recall,
    require_density,
    test_nll,
    wasserstein_1d,
)
from physgen.vae import gaussian_vae


def test_test_nll_is_the_entropy_for_the_true_model(x64):
    d, n = 3, 20_000
    x = jax.random.normal(jax.random.key(0), (n, d))
    est = test_nll(StandardNormal((d,)), x)
    entropy = 0.5 * d * math.log(2 * math.pi * math.e)
    assert abs(float(est.value) - entropy) < 4 * float(est.stderr)
    assert abs(float(est.stderr) - math.sqrt(d / 2 / n)) < 0.05 * math.sqrt(d / 2 / n)
    with pytest.raises(NoDensityError, match="lower bound"):
        test_nll(gaussian_vae(jax.random.key(0), 3, 2, width=4, depth=1), x)
    with pytest.raises(TypeError, match="exact log_prob"):
        require_density(object())


def test_mmd_matches_closed_form_for_gaussians(x64):
    """x ~ N(0, s² I), y ~ N(δ, s² I), kernel exp(−r²/2h²):
    MMD² = 2 (h²/(h²+2s²))^{d/2} [1 − exp(−|δ|²/(2(h²+2s²)))]."""
    d, s, h = 2, 1.0, 1.5
    delta = jnp.array([0.8, 0.0])
    n = 1500
    vals = []
    for r in range(3):
        kx, ky = jax.random.split(jax.random.key(r))
        x = s * jax.random.normal(kx, (n, d))
        y = delta + s * jax.random.normal(ky, (n, d))
        vals.append(float(mmd2(x, y, bandwidth=h)))
    c = h**2 + 2 * s**2
    exact = 2 * (h**2 / c) ** (d / 2) * (1 - math.exp(-float(delta @ delta) / (2 * c)))
    mean, se = np.mean(vals), np.std(vals, ddof=1) / math.sqrt(len(vals))
    assert abs(mean - exact) < 4 * se + 0.1 * exact
    # unbiased estimator against a plain double loop on a few points
    xs, ys = np.asarray(x[:7]), np.asarray(y[:5])

    def k(a, b):
        return math.exp(-np.sum((a - b) ** 2) / (2 * h**2))

    kxx = sum(k(a, b) for i, a in enumerate(xs) for j, b in enumerate(xs) if i != j) / (7 * 6)
    kyy = sum(k(a, b) for i, a in enumerate(ys) for j, b in enumerate(ys) if i != j) / (5 * 4)
    kxy = sum(k(a, b) for a in xs for b in ys) / 35
    assert np.isclose(mmd2(xs, ys, bandwidth=h), kxx + kyy - 2 * kxy, rtol=1e-10)


def test_mmd_test_rejects_different_and_keeps_equal_distributions():
    k = jax.random.split(jax.random.key(0), 4)
    n = 300
    x = jax.random.normal(k[0], (n, 2))
    same = jax.random.normal(k[1], (n, 2))
    shifted = jax.random.normal(k[2], (n, 2)) + jnp.array([0.5, 0.0])
    r_diff = mmd_test(k[3], x, shifted, num_permutations=200)
    r_same = mmd_test(k[3], x, same, num_permutations=200)
    assert float(r_diff.p_value) < 0.01
    assert float(r_same.p_value) > 0.05
    assert float(r_diff.mmd2) > 5 * float(r_diff.null_std)
    assert 1 / 201 <= float(r_same.p_value) <= 1


def test_precision_recall(x64):
    k = jax.random.split(jax.random.key(0), 3)
    n = 1500
    real = jax.random.normal(k[0], (n, 2))
    fake = jax.random.normal(k[1], (n, 2))
    p, r = precision_recall(real, fake, k=3)
    assert float(p.value) > 0.93 and float(r.value) > 0.93
    # two modes in the data, one in the model: precision ≈ 1, recall ≈ ½
    centres = jnp.where(jax.random.bernoulli(k[2], 0.5, (n, 1)), 6.0, -6.0) * jnp.array([1.0, 0])
    bimodal = real + centres
    one_mode = fake + jnp.array([6.0, 0.0])
    p, r = precision_recall(bimodal, one_mode, k=3)
    assert float(p.value) > 0.93
    assert abs(float(r.value) - 0.5) < 0.06
    # disjoint supports: both zero
    p, r = precision_recall(real, fake + 50.0, k=3)
    assert float(p.value) == 0.0 and float(r.value) == 0.0


def test_wasserstein_and_energy_distances(x64):
    a = np.random.default_rng(0).normal(size=301)
    b = np.random.default_rng(1).gamma(2.0, size=200)
    assert np.isclose(wasserstein_1d(a, b), wasserstein_distance(a, b), rtol=1e-10)
    # E(x) = ½ x², model N(0, 2) vs reference N(0, 1): βE_model ~ 2 βE_ref by the monotone
    # coupling, so W1 = E[½ χ²_1] = ½ exactly
    n = 100_000
    z = jax.random.normal(jax.random.key(0), (n, 1))
    z2 = jax.random.normal(jax.random.key(1), (n, 1))

    def energy(x):
        return 0.5 * jnp.sum(x**2)

    res = energy_distances(energy, math.sqrt(2) * z, z2)
    assert abs(float(res["wasserstein_1d"]) - 0.5) < 0.02
    assert res["total_variation"] > 0.1
    same = energy_distances(energy, z, z2)
    assert float(same["wasserstein_1d"]) < 0.01 and float(same["total_variation"]) < 0.02
    m = same["mean_energy_model"]
    assert abs(float(m.value) - 0.5) < 4 * float(m.stderr)


def test_histogram_kl_is_the_kl_of_the_two_histograms():
    """Weighted and unweighted histograms against Σ P log(P/Q) by hand; zero for equal
    histograms; a bin that Q misses costs P log(P/eps); bad input is refused by name."""
    from physgen.metrics import histogram_kl

    centres = -np.pi + 2 * np.pi * (np.arange(4) + 0.5) / 4
    p = np.repeat(centres, [1, 2, 3, 4])  # P = (0.1, 0.2, 0.3, 0.4)
    q_w = np.array([0.4, 0.3, 0.2, 0.1])
    exact = sum(a * math.log(a / b) for a, b in zip([0.1, 0.2, 0.3, 0.4], q_w, strict=True))
    got = histogram_kl(p, centres, bins=4, q_weights=q_w, eps=0.0)
    assert got == pytest.approx(exact, rel=1e-12)
    assert histogram_kl(p, p[::-1], bins=4) == pytest.approx(0.0, abs=1e-12)
    missed = histogram_kl(centres, centres[:2], bins=4, eps=1e-8)
    assert missed == pytest.approx(0.5 * math.log(0.25 / 1e-8) + 0.5 * math.log(0.5), rel=1e-6)
    with pytest.raises(ValueError, match="p has values outside"):
        histogram_kl(np.array([4.0]), centres)
    with pytest.raises(ValueError, match="q weights must be non-negative"):
        histogram_kl(centres, centres, q_weights=-np.ones(4))


def test_sample_w2_on_the_torus_takes_the_nearest_image():
    from physgen.metrics import sample_w2

    x = np.array([[np.pi - 0.1, 0.0]])
    y = np.array([[-np.pi + 0.1, 0.0]])
    assert sample_w2(x, y, period=2 * np.pi) == pytest.approx(0.2, rel=1e-12)
    assert sample_w2(x, y) == pytest.approx(2 * np.pi - 0.2, rel=1e-12)
    # an evenly spaced ring shifted by less than half its spacing: the shift is optimal
    ring = np.linspace(-np.pi, np.pi, 50, endpoint=False)[:, None]
    shifted = (ring + 0.05 + np.pi) % (2 * np.pi) - np.pi
    assert sample_w2(ring, shifted, period=2 * np.pi) == pytest.approx(0.05, rel=1e-9)
    with pytest.raises(ValueError, match="period must be > 0"):
        sample_w2(ring, ring, period=0.0)
