"""Lattice φ⁴ and the free field: symmetries, gradients, the two forms of the action, the
hopping-parameter form, exact free-field references against dense linear algebra, and an
independence sampler with the exact free-field proposal."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physgen.distributions._base import AbstractDistribution
from physgen.samplers import FlowIndependenceMetropolis, run_mcmc
from physgen.targets._phi4 import ALBERGO_ENSEMBLES, FreeField, Phi4


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _field(seed, L=4):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(L, L)))


def _explicit_action(phi, m2, lam):
    """``Σ_x [−2 Σ_μ φ(x)φ(x+μ̂) + (4 + m²)φ(x)² + λφ(x)⁴]`` by explicit loops."""
    phi = np.asarray(phi)
    L1, L2 = phi.shape
    s = 0.0
    for i in range(L1):
        for j in range(L2):
            p = phi[i, j]
            s += -2 * p * (phi[(i + 1) % L1, j] + phi[i, (j + 1) % L2])
            s += (4 + m2) * p**2 + lam * p**4
    return s


@pytest.mark.parametrize("L", [4, 5])
def test_action_matches_explicit_link_form(L):
    phi = _field(0, L)
    t = Phi4(L, -4.0, 8.0)
    assert float(t.energy(phi)) == pytest.approx(_explicit_action(phi, -4.0, 8.0), rel=1e-12)


def test_action_symmetries():
    t = Phi4(6, -4.0, 6.975)
    phi = _field(1, 6)
    s = float(t.energy(phi))
    assert float(t.energy(-phi)) == pytest.approx(s, rel=1e-13)
    for shift in [(1, 0), (0, 1), (2, 3), (5, 5)]:
        assert float(t.energy(jnp.roll(phi, shift, axis=(0, 1)))) == pytest.approx(s, rel=1e-12)
    # lattice reflections and the transpose, too
    assert float(t.energy(phi[::-1])) == pytest.approx(s, rel=1e-12)
    assert float(t.energy(phi.T)) == pytest.approx(s, rel=1e-12)
    # and it does depend on the configuration (a non-symmetric change changes it)
    assert abs(float(t.energy(phi.at[0, 0].add(0.3))) - s) > 1e-3


@pytest.mark.parametrize("target", [Phi4(4, -4.0, 8.0), Phi4(4, 0.5, 1.3), FreeField(4, 0.7)])
def test_gradient_matches_finite_differences(target):
    phi = _field(2)
    g = np.asarray(jax.grad(target.energy)(phi))
    h = 1e-6
    fd = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            e = jnp.zeros((4, 4)).at[i, j].set(h)
            fd[i, j] = (float(target.energy(phi + e)) - float(target.energy(phi - e))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)
    # and the analytic gradient of the link form
    phin = np.asarray(phi)
    lam = getattr(target, "lam", 0.0)
    nb = sum(np.roll(phin, s, axis=a) for s in (1, -1) for a in (0, 1))
    exact = -2 * nb + 2 * (4 + target.m2) * phin + 4 * lam * phin**3
    np.testing.assert_allclose(g, exact, rtol=1e-10, atol=1e-10)


def test_hopping_parameter_form():
    L, kappa, lam_t = 4, 0.27, 0.02
    t = Phi4.from_hopping(L, kappa, lam_t)
    assert t.m2 == pytest.approx((1 - 2 * lam_t) / kappa - 4)
    assert t.lam == pytest.approx(lam_t / kappa**2)
    k2, l2 = t.hopping_parameters()
    assert (k2, l2) == (pytest.approx(kappa), pytest.approx(lam_t))
    phi_h = _field(3)
    nb = sum(jnp.roll(phi_h, -1, axis=a) for a in (0, 1))
    s_hop = jnp.sum(-2 * kappa * phi_h * nb + phi_h**2 + lam_t * (phi_h**2 - 1) ** 2)
    s = t.energy(math.sqrt(kappa) * phi_h)
    assert float(s) == pytest.approx(float(s_hop) - lam_t * L * L, rel=1e-12)
    # the Albergo ensembles (m² = -4) sit at λ̃ = 1/2
    e2 = ALBERGO_ENSEMBLES["E2"]
    _, lt = Phi4(e2["L"], e2["m2"], e2["lam"]).hopping_parameters()
    assert lt == pytest.approx(0.5)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="lam"):
        Phi4(4, -4.0, -1.0)
    with pytest.raises(ValueError, match="m2 > 0"):
        Phi4(4, -1.0, 0.0)
    with pytest.raises(ValueError, match="L must"):
        Phi4(1, 1.0, 1.0)
    with pytest.raises(ValueError, match="m2 > 0"):
        FreeField(4, -0.5)
    with pytest.raises(ValueError, match="shape"):
        Phi4(4, -4.0, 8.0).energy(jnp.zeros((4, 5)))
    with pytest.raises(ValueError, match="kappa"):
        Phi4.from_hopping(4, -0.1, 0.5)


def _dense_precision(target):
    """``K`` with ``S = ½ φᵀKφ`` by the Hessian of the action (dense, V × V)."""
    L = target.L
    return np.asarray(jax.hessian(lambda v: target.energy(v.reshape(L, L)))(jnp.zeros(L * L)))


@pytest.mark.parametrize("m2,beta", [(0.5, 1.0), (2.0, 0.7)])
def test_free_field_exact_references_match_dense_gaussian(m2, beta):
    t = FreeField(4, m2, beta)
    K = beta * _dense_precision(t)
    V = K.shape[0]
    # the Hessian of S is K = 2(−Δ + m²); its spectrum is 2(p̂² + m²)
    np.testing.assert_allclose(
        np.sort(np.linalg.eigvalsh(K)), np.sort(beta * t.eigenvalues().ravel()), rtol=1e-12
    )
    _, logdet = np.linalg.slogdet(K)
    assert t.log_Z() == pytest.approx(0.5 * V * math.log(2 * math.pi) - 0.5 * logdet, rel=1e-12)
    cov = np.linalg.inv(K)
    np.testing.assert_allclose(t.propagator().ravel(), cov[0], rtol=1e-12, atol=1e-14)
    refs = t.references()
    assert refs["chi2"] == pytest.approx(cov[0].sum(), rel=1e-12)
    assert refs["phi2"] == pytest.approx(cov[0, 0], rel=1e-12)
    # the Phi4 target with lam = 0 is the same action
    phi = _field(4)
    assert float(Phi4(4, m2, 0.0).energy(phi)) == pytest.approx(float(t.energy(phi)), rel=1e-13)


def test_free_field_exact_samples_have_the_exact_covariance():
    t = FreeField(4, 0.6)
    n = 40_000
    x = np.asarray(t.sample_exact(jax.random.key(0), n)).reshape(n, -1)
    cov = np.linalg.inv(_dense_precision(t))
    emp = x.T @ x / n
    se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / n)
    z = (emp - cov) / se
    assert np.max(np.abs(z)) < 5.0
    # ⟨S⟩ = V/2 exactly; Var(S) = V/2
    s = np.asarray(jax.vmap(t.energy)(jnp.asarray(x.reshape(n, 4, 4))))
    assert abs(s.mean() - t.references()["mean_energy"]) < 5 * math.sqrt(8.0 / n)


class _ExactFreeField(AbstractDistribution):
    """The free-field Gaussian as a distribution (exact sampling and normalised log q)."""

    target: FreeField
    shape: tuple = eqx.field(static=True)
    cond_shape: None = None

    def __init__(self, target):
        self.target = target
        self.shape = target.event_shape
        self.cond_shape = None

    def _log_prob(self, x, condition=None):
        return self.target.log_density(x) - self.target.log_Z()

    def _sample(self, key, condition=None):
        return self.target.sample_exact(key, 1)[0]

    def _sample_and_log_prob(self, key, condition=None):
        x = self._sample(key)
        return x, self._log_prob(x)


def test_imh_with_the_exact_free_field_proposal_accepts_every_move():
    t = FreeField(4, 0.8)
    res = run_mcmc(
        jax.random.key(1),
        FlowIndependenceMetropolis(_ExactFreeField(t)),
        t,
        num_chains=2,
        num_samples=200,
        num_warmup=0,
    )
    np.testing.assert_allclose(np.asarray(res.acceptance_rate), 1.0, atol=1e-9)
    xs = np.asarray(res.samples)
    # every step moved (a new independent draw)
    assert np.all(np.any(xs[:, 1:] != xs[:, :-1], axis=(-2, -1)))
