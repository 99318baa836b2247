"""Are the error bars honest? z-scores over many seeds (vectorised: one chain or one sample
set per seed, vmapped), against the 4.55% of |z| > 2 a calibrated error gives.

Every test states its false-failure rate: with ``n`` seeds the fraction beyond ±2 has a
binomial standard deviation ``√(0.0455·0.9545/n)``, and the band asserted is three of them
(0.3% for a calibrated estimator, before the estimator's own small finite-sample bias).
"""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import physgen
from physgen import reweighting as rw
from physgen.diagnostics import ShortChainWarning, mcse
from physgen.flows import lattice_flow
from physgen.objectives import ReverseKL
from physgen.observables import susceptibility
from physgen.reweighting import ImportanceWeightWarning
from physgen.samplers import HMC, NUTS, run_mcmc
from physgen.targets import FreeField, Gaussian

P2 = 0.0455  # P(|z| > 2) for a standard normal


def _band(n):
    return 3 * math.sqrt(P2 * (1 - P2) / n)


@pytest.fixture(scope="module")
def anisotropic_gaussian():
    """10-D Gaussian, variances from 0.1 to 10 (condition number 100)."""
    return Gaussian(np.zeros(10), np.diag(np.logspace(-1, 1, 10)))


@pytest.mark.parametrize("sampler", [HMC(0.1, 7), NUTS(0.1)], ids=["HMC_L7", "NUTS"])
def test_mcse_is_calibrated_on_oscillating_chains(sampler, anisotropic_gaussian):
    """500 chains (each one seed) of 500 draws after 300 adapted warm-up steps, on a 10-D
    anisotropic Gaussian: HMC with a short fixed trajectory (7 leapfrog steps, whose adapted
    length lands near a half period: strongly oscillating chains) and NUTS (ρ(1) ≈ −0.3).
    The fraction of per-chain means beyond ±2 MCSE, over all 10 coordinates (5000 z-scores,
    nearly independent; the band uses the 500 chains, so it is conservative), must be 4.55% ±
    2.8%. Geyer's MCSE (the default) measured 4.3% (HMC) and 4.9% (NUTS). Wolff's window,
    the old default, measured 27% and 12% and must fail the same band: it stops at W = 1
    when ρ(1) < 0 and reports τ = 1 + 2ρ(1) ≈ 0."""
    res = run_mcmc(jax.random.key(0), sampler, anisotropic_gaussian, num_chains=500,
                   num_samples=500, num_warmup=300)
    x = np.asarray(res.samples, np.float64)  # (chains, draws, 10)
    means = x.mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortChainWarning)
        errors = mcse(np.moveaxis(x, 0, 1)[None])  # (500, 10): every chain on its own
    frac = float(np.mean(np.abs(means) > 2 * errors))
    assert abs(frac - P2) < _band(500), frac
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wolff = np.array([[mcse(x[c, :, i], method="wolff") for i in range(10)]
                          for c in range(200)])
    frac_wolff = float(np.mean(np.abs(means[:200]) > 2 * wolff))
    assert frac_wolff > P2 + _band(200), frac_wolff


@pytest.fixture(scope="module")
def undertrained_lattice_flow():
    """The issue's case: the free field on a 6 × 6 lattice, χ₂ = 1/(2m²) = 5, and an affine
    lattice flow (4 couplings, 8 channels) trained by reverse KL for only 100 steps."""
    target = FreeField(6, 0.1)
    flow = lattice_flow(jax.random.key(0), 6, num_layers=4, hidden_channels=(8,))
    flow, _, _ = physgen.fit(jax.random.key(1), flow, ReverseKL(target, 64), steps=100,
                             optimizer=optax.adam(1e-3), progress=False)
    return target, flow


@eqx.filter_jit
def _lattice_draws(flow, target, key, seeds, n, m):
    """``seeds`` sets of ``n`` flow samples and ``m`` exact target draws, one batch each:
    magnetisations and log-weights ``(seeds, n)``, reference log-weights ``(seeds, m)``."""
    k1, k2 = jax.random.split(key)
    x, log_q = flow.sample_and_log_prob(k1, (seeds * n,))
    log_w = jax.vmap(target.log_density)(x) - log_q
    ref = target.sample_exact(k2, seeds * m)
    log_w_ref = jax.vmap(target.log_density)(ref) - flow.log_prob(ref)
    return (jnp.mean(x, axis=(1, 2)).reshape(seeds, n), log_w.reshape(seeds, n),
            log_w_ref.reshape(seeds, m))


def test_undertrained_lattice_flow_errors_fail_and_the_warnings_fire(undertrained_lattice_flow):
    """20 seeds of 1000 flow samples: χ₂ reweighted with its delta-method error lands 2-70
    standard errors low (measured: every seed beyond ±2; a calibrated error gives 1 ± 3).
    Every seed must be flagged by the checks (weight_diagnostics: k̂ > 0.7 or ESS/N < 0.1;
    the summary: target mass beyond every sampled weight above 1/√ESS, with 500 exact target
    draws per seed). The summary and the lattice observables warn on their own."""
    target, flow = undertrained_lattice_flow
    chi_exact, n, m, seeds = 1 / (2 * target.m2), 1000, 500, 20
    mag, log_w, log_w_ref = (np.asarray(a, np.float64) for a in _lattice_draws(
        flow, target, jax.random.key(7), seeds, n, m))
    wbar = np.exp(log_w - log_w.max(1, keepdims=True))
    wbar /= wbar.sum(1, keepdims=True)
    m1, m2 = (wbar * mag).sum(1), (wbar * mag**2).sum(1)
    se = 36 * np.sqrt((wbar**2 * (mag**2 - m2[:, None]) ** 2).sum(1))  # ⟨M⟩ = 0: V⟨M²⟩'s
    z = (36 * (m2 - m1**2) - chi_exact) / se
    assert np.mean(np.abs(z) > 2) > P2 + _band(seeds), z
    khat = np.asarray(jax.vmap(rw.pareto_khat)(jnp.asarray(log_w)))
    ess = 1 / (wbar**2).sum(1)
    missed = np.array([float(rw.unsampled_mass(a, b).value) for a, b in zip(log_w, log_w_ref,
                                                                             strict=True)])
    flagged = (khat > rw.KHAT_THRESHOLD) | (ess / n < rw.MIN_ESS_FRACTION) | (
        missed > 1 / np.sqrt(ess))
    assert flagged.all(), (z, khat, ess / n, missed)
    bg = physgen.BoltzmannGenerator(flow, target)
    with pytest.warns(ImportanceWeightWarning, match="beyond every sampled weight"):
        bg.summary(jax.random.key(8), n, reference=target.sample_exact(jax.random.key(9), m))
    x, log_q = flow.sample_and_log_prob(jax.random.key(10), (n,))
    with pytest.warns(ImportanceWeightWarning, match="lattice observables"):
        chi = susceptibility(np.asarray(x), log_w=np.asarray(
            jax.vmap(target.log_density)(x) - log_q))
    assert abs(float(chi.value) - chi_exact) > 2 * float(chi.stderr)
