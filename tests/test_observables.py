"""Lattice observables against explicit sums and the exact free field (z-scores)."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physgen.observables import (
    binder_cumulant,
    effective_mass,
    ensemble_mean,
    jackknife,
    magnetization,
    pole_mass,
    susceptibility,
    two_point_function,
    two_point_per_config,
    zero_momentum_correlator,
)
from physgen.reweighting import ImportanceWeightWarning
from physgen.targets._phi4 import FreeField

L, M2, N = 4, 0.5, 20_000


@pytest.fixture(scope="module")
def free_samples():
    with jax.enable_x64(True):
        t = FreeField(L, M2)
        return t, np.asarray(t.sample_exact(jax.random.key(0), N))


def _z(est, exact):
    return np.abs((np.asarray(est.value) - exact) / np.asarray(est.stderr))


def test_per_configuration_observables_against_explicit_sums():
    phi = np.random.default_rng(0).normal(size=(3, 4, 6))
    np.testing.assert_allclose(magnetization(phi), phi.mean(axis=(1, 2)), rtol=1e-6)
    c = np.asarray(two_point_per_config(jnp.asarray(phi, jnp.float32)))
    explicit = np.zeros((3, 4, 6))
    for a in range(4):
        for b in range(6):
            explicit[:, a, b] = np.mean(phi * np.roll(phi, (-a, -b), axis=(1, 2)), axis=(1, 2))
    np.testing.assert_allclose(c, explicit, rtol=1e-4, atol=1e-5)
    # Σ_x C(x) = V M²
    np.testing.assert_allclose(c.sum(axis=(1, 2)), 24 * phi.mean(axis=(1, 2)) ** 2, rtol=1e-4)
    with pytest.raises(ValueError, match="L1, L2"):
        magnetization(np.zeros(5))


def test_free_field_observables_match_exact_values(free_samples):
    t, phi = free_samples
    g_exact = t.propagator()
    chi = susceptibility(phi)
    assert _z(chi, 1 / (2 * M2)) < 4.5
    assert float(chi.stderr) < 0.05
    assert _z(susceptibility(phi, connected=False), 1 / (2 * M2)) < 4.5
    g = two_point_function(phi)
    assert g.value.shape == (L, L)
    assert np.max(_z(g, g_exact)) < 4.5
    gt = zero_momentum_correlator(phi)
    assert np.max(_z(gt, g_exact.sum(axis=1))) < 4.5
    # the free zero-momentum correlator is an exact cosh: m_eff(t) = arccosh(1 + m²/2)
    m_exact = math.acosh(1 + M2 / 2)
    meff = effective_mass(phi)
    assert np.max(_z(meff, m_exact)[1:2]) < 4.5
    mp, xi = pole_mass(phi)
    assert _z(mp, m_exact) < 4.5 and _z(xi, 1 / m_exact) < 4.5
    # Gaussian: ⟨M⁴⟩ = 3⟨M²⟩², Binder cumulant 0
    assert _z(binder_cumulant(phi), 0.0) < 4.5
    # a wrong reference is rejected at this precision
    assert _z(chi, 1.1 / (2 * M2)) > 4.5


def test_chains_and_single_series_agree(free_samples):
    _, phi = free_samples
    a = susceptibility(phi)
    b = susceptibility(phi.reshape(4, N // 4, L, L), num_blocks=5)
    assert float(a.value) == pytest.approx(float(b.value), rel=1e-10)
    assert float(b.stderr) == pytest.approx(float(a.stderr), rel=0.5)
    m = ensemble_mean(np.abs(magnetization(phi)).reshape(4, -1))
    assert m.value.shape == () and float(m.stderr) > 0


def test_reweighted_observables(free_samples):
    """Samples of the free field at m² = 0.5 reweighted to m² = 0.8."""
    t, phi = free_samples
    target = FreeField(L, 0.8)
    with jax.enable_x64(True):
        log_w = np.asarray(jax.vmap(target.log_density)(phi) - jax.vmap(t.log_density)(phi))
    chi = susceptibility(phi, log_w=log_w)
    assert _z(chi, 1 / 1.6) < 4.5
    assert _z(chi, 1 / (2 * M2)) > 4.5  # and not the proposal's value
    assert np.max(_z(two_point_function(phi, log_w=log_w), target.propagator())) < 4.5
    m2 = ensemble_mean(np.asarray(magnetization(phi)) ** 2, log_w=log_w)
    assert _z(m2, 1 / 1.6 / L**2) < 4.5
    with pytest.raises(ValueError, match="log_w"):
        susceptibility(phi, log_w=log_w[:-1])


def test_jackknife_of_a_mean_is_the_standard_error():
    x = np.random.default_rng(1).normal(size=200)
    est = jackknife(lambda mu: mu, x, num_blocks=200)
    assert float(est.value) == pytest.approx(x.mean())
    assert float(est.stderr) == pytest.approx(x.std(ddof=1) / math.sqrt(200), rel=1e-6)
    with pytest.raises(ValueError, match="num_blocks"):
        jackknife(lambda mu: mu, x, num_blocks=1)


def test_ensemble_mean_error_holds_for_oscillating_chains():
    """An antithetic AR(1) chain (ρ = −0.6, as HMC's ρ(1) < 0): τ = 0.25. The error of the
    mean is Geyer's MCSE, within 10% of the exact one for 20,000 draws (its relative sd is
    ~2%); Wolff's window would give τ ≈ 1 + 2ρ(1) ≈ −0.2, floored to ~0."""
    rho, n = -0.6, 20_000
    e = np.random.default_rng(2).normal(size=n + 1000)
    x = np.zeros_like(e)
    for i in range(1, e.size):
        x[i] = rho * x[i - 1] + e[i]
    x = x[1000:]
    est = ensemble_mean(x)
    exact = math.sqrt((1 + rho) / (1 - rho) / (1 - rho**2) / n)
    assert float(est.stderr) == pytest.approx(exact, rel=0.1)


def test_weighted_observables_warn_when_the_weights_cannot_be_trusted(free_samples):
    """Heavy-tailed weights (a Pareto tail of shape 0.9): every weighted observable warns,
    naming the k̂ threshold; well-behaved weights pass quietly."""
    _, phi = free_samples
    u = np.random.default_rng(3).uniform(1e-12, 1.0, size=N)
    with pytest.warns(ImportanceWeightWarning, match=r"lattice observables.*> 0\.7"):
        susceptibility(phi, log_w=-0.9 * np.log(u))
    with pytest.warns(ImportanceWeightWarning, match=r"> 0\.7"):
        ensemble_mean(np.asarray(magnetization(phi)), log_w=-0.9 * np.log(u))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        susceptibility(phi, log_w=0.1 * np.log(u))
