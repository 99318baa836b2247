"""VAE: closed-form KL, the bound ordering ELBO ≤ IWAE_K ≤ IWAE_K' ≤ log p(x) on a linear-
Gaussian VAE with an exact marginal, objectives, annealing and the no-density type."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physgen
from physgen.metrics import NoDensityError, require_density, test_nll_bound
from physgen.vae import (
    ELBO,
    IWAE,
    VAE,
    BernoulliDecoder,
    DiagonalGaussianNet,
    GaussianDecoder,
    bernoulli_vae,
    diag_gaussian_log_prob,
    gaussian_kl,
    gaussian_vae,
    interpolate,
    latent_traversal,
)


def test_closed_form_kl_matches_monte_carlo(x64):
    key = jax.random.key(0)
    mean = jnp.array([0.3, -1.2, 0.8])
    log_var = jnp.array([-0.5, 0.4, -1.5])
    n = 400_000
    eps = jax.random.normal(key, (n, 3))
    z = mean + jnp.exp(0.5 * log_var) * eps
    log_q = jax.vmap(lambda zi: diag_gaussian_log_prob(zi, mean, log_var))(z)
    log_p = jax.vmap(lambda zi: diag_gaussian_log_prob(zi, jnp.zeros(3), jnp.zeros(3)))(z)
    d = np.asarray(log_q - log_p)
    mc, se = d.mean(), d.std() / math.sqrt(n)
    exact = float(gaussian_kl(mean, log_var))
    assert abs(mc - exact) < 4 * se
    assert se < 0.01 * exact  # the check has teeth
    # KL(N(0, I) ‖ N(0, I)) = 0 and the gradient vanishes there
    assert float(gaussian_kl(jnp.zeros(3), jnp.zeros(3))) == 0.0


# -- linear-Gaussian VAE: p(z) = N(0, I), p(x|z) = N(Wz + b, s² I), p(x) = N(b, WWᵀ + s² I) --
W = np.array([[1.5, 0.4], [-0.7, 1.1]])
B = np.array([0.5, -1.0])
S2 = 0.3


def _linear_vae():
    """A VAE whose networks are affine, set to the model above, with a deliberately
    imperfect encoder (shrunk mean map, wider variance) so that the bounds are strict."""
    key = jax.random.key(0)
    ke, kd = jax.random.split(key)
    enc = DiagonalGaussianNet(2, 2, key=ke, depth=0, min_log_var=None)
    dec = GaussianDecoder(2, 2, key=kd, depth=0, min_log_var=None)
    post_cov = np.linalg.inv(np.eye(2) + W.T @ W / S2)
    m_exact = post_cov @ W.T / S2  # posterior mean = m_exact (x - b)
    m_enc = 0.7 * m_exact
    enc_w = np.concatenate([m_enc, np.zeros((2, 2))])
    enc_b = np.concatenate([-m_enc @ B, np.log(np.diag(post_cov)) + 0.5])
    dec_w = np.concatenate([W, np.zeros((2, 2))])
    dec_b = np.concatenate([B, np.full(2, math.log(S2))])
    enc = eqx.tree_at(
        lambda e: (e.net.mlp.layers[0].weight, e.net.mlp.layers[0].bias),
        enc,
        (jnp.asarray(enc_w), jnp.asarray(enc_b)),
    )
    dec = eqx.tree_at(
        lambda d: (d.net.net.mlp.layers[0].weight, d.net.net.mlp.layers[0].bias),
        dec,
        (jnp.asarray(dec_w), jnp.asarray(dec_b)),
    )
    return VAE(enc, dec), m_enc, np.exp(np.log(np.diag(post_cov)) + 0.5)


def _exact_log_marginal(x):
    cov = W @ W.T + S2 * np.eye(2)
    d = x - B
    return -0.5 * (
        d @ np.linalg.solve(cov, d) + np.linalg.slogdet(cov)[1] + 2 * math.log(2 * math.pi)
    )


def _exact_elbo(x, m_enc, var_enc):
    mu = m_enc @ (x - B)
    r = x - W @ mu - B
    rec = -0.5 * (
        (r @ r + np.trace(W @ np.diag(var_enc) @ W.T)) / S2
        + 2 * math.log(S2)
        + 2 * math.log(2 * math.pi)
    )
    kl = 0.5 * np.sum(var_enc + mu**2 - 1 - np.log(var_enc))
    return rec - kl


XS = np.array([[0.5, -1.0], [2.0, 1.0], [-1.5, 0.3]])


def test_elbo_matches_closed_form_on_linear_gaussian(x64):
    vae, m_enc, var_enc = _linear_vae()
    n = 100_000
    xs = jnp.broadcast_to(jnp.asarray(XS), (n, 3, 2))
    e = np.asarray(vae.elbo(jax.random.key(1), xs))  # (n, 3)
    for j, x in enumerate(XS):
        exact = _exact_elbo(x, m_enc, var_enc)
        mc, se = e[:, j].mean(), e[:, j].std() / math.sqrt(n)
        assert abs(mc - exact) < 4 * se + 1e-12
        assert exact < _exact_log_marginal(x) - 0.05  # the encoder is imperfect: a strict gap


def test_bound_ordering_elbo_iwae_log_p(x64):
    """ELBO ≤ E[IWAE_K] ≤ E[IWAE_K'] ≤ log p(x) (K < K'), expectations over many replicates,
    each inequality with a margin of 4 standard errors."""
    vae, m_enc, var_enc = _linear_vae()
    reps = 20_000
    xs = jnp.broadcast_to(jnp.asarray(XS), (reps, 3, 2))
    means, ses = {}, {}
    for i, k in enumerate([1, 4, 32]):
        b = np.asarray(vae.iwae(jax.random.key(10 + i), xs, k))
        means[k], ses[k] = b.mean(0), b.std(0) / math.sqrt(reps)
    for j, x in enumerate(XS):
        elbo = _exact_elbo(x, m_enc, var_enc)
        log_p = _exact_log_marginal(x)
        # IWAE_1 is the ELBO (with a Monte Carlo KL): equal in expectation
        assert abs(means[1][j] - elbo) < 4 * ses[1][j]
        assert elbo < means[4][j] - 4 * ses[4][j]
        assert means[4][j] + 4 * ses[4][j] < means[32][j] - 4 * ses[32][j]
        assert means[32][j] < log_p + 4 * ses[32][j]
        assert log_p - means[32][j] < 0.5 * (log_p - elbo)  # the bound tightens
    # the importance-sampled estimate converges to log p(x); its stderr is honest
    est, se = vae.log_prob_estimate(jax.random.key(3), jnp.asarray(XS), 200_000)
    exact = np.array([_exact_log_marginal(x) for x in XS])
    assert np.all(np.abs(np.asarray(est) - exact) < 5 * np.asarray(se) + 1e-4)
    assert np.all(np.asarray(se) < 0.01)
    # log_prob_bound is the IWAE bound (same key, same draws)
    lb = vae.log_prob_bound(jax.random.key(11), xs, 4)
    assert np.allclose(np.asarray(lb).mean(0), means[4], rtol=1e-12)


def test_vae_has_no_density():
    vae = gaussian_vae(jax.random.key(0), 2, 2, width=8, depth=1)
    with pytest.raises(NoDensityError, match="lower bound"):
        vae.log_prob(jnp.zeros((3, 2)))
    with pytest.raises(NoDensityError, match="lower bound"):
        require_density(vae, "reweighting")
    with pytest.raises(TypeError, match="AbstractLatentVariableModel"):
        ELBO().loss(physgen.distributions.StandardNormal((2,)), jax.random.key(0),
                    jnp.ones((3, 2)), None, 0)


def test_elbo_objective_terms_and_beta():
    vae = gaussian_vae(jax.random.key(0), 2, 2, width=8, depth=1)
    x = jax.random.normal(jax.random.key(1), (16, 2))
    loss_fn = eqx.filter_jit(lambda obj, k: obj.loss(vae, k, x, None, 0))
    loss1, aux1, _ = loss_fn(ELBO(1.0), jax.random.key(2))
    loss0, aux0, _ = loss_fn(ELBO(0.0), jax.random.key(2))
    assert np.isclose(loss1, -(aux1["reconstruction"] - aux1["kl"]), rtol=1e-5)
    assert np.isclose(loss0, -aux0["reconstruction"], rtol=1e-5)
    assert aux1["kl"] > 0
    rec, kl = vae.elbo_terms(jax.random.key(2), x)
    assert rec.shape == kl.shape == (16,)
    lk, aux, _ = loss_fn(IWAE(8), jax.random.key(3))
    assert np.isclose(lk, -aux["iwae"])
    with pytest.raises(ValueError, match="beta"):
        ELBO(-1.0)


def test_fit_elbo_and_annealing():
    data = physgen.datasets.get_dataset("moons").sample(jax.random.key(0), 2000)
    vae = gaussian_vae(jax.random.key(1), 2, 2, width=16, depth=1)
    vae, hist, _ = physgen.fit(
        jax.random.key(2),
        vae,
        ELBO(kl_warmup=60),
        steps=120,
        data=data,
        batch_size=64,
        learning_rate=3e-3,
        progress=False,
    )
    assert hist["loss"].shape == (120,)
    # β rises linearly over the first 60 steps, read from the step
    np.testing.assert_allclose(hist["beta"][[0, 15, 30, 60, 90]], [0.0, 0.25, 0.5, 1.0, 1.0],
                               atol=1e-6)
    # training lowered the ELBO-based NLL bound (nats) from its initial value
    first = float(-hist["elbo"][:10].mean())
    last = float(-hist["elbo"][-10:].mean())
    assert last < first
    est = test_nll_bound(jax.random.key(3), vae, data[:200], 4)
    # an upper bound on the NLL: above the moons' entropy 2.396 (up to noise), and below the
    # untrained VAE's 3.76 ± 0.09 after 120 steps (measured 3.34 ± 0.04)
    assert 2.396 - 4 * float(est.stderr) < float(est.value) < 3.55, est


def test_iwae_trains_through_fit():
    """IWAE as the training objective: its K = 8 bound improves on the initial model's and
    lies above the data entropy."""
    data = physgen.datasets.get_dataset("moons").sample(jax.random.key(0), 2000)
    vae = gaussian_vae(jax.random.key(1), 2, 2, width=16, depth=1)
    before = test_nll_bound(jax.random.key(3), vae, data[:200], 8)
    vae, hist, _ = physgen.fit(jax.random.key(2), vae, IWAE(8), steps=200, data=data,
                               batch_size=64, learning_rate=3e-3, progress=False)
    after = test_nll_bound(jax.random.key(3), vae, data[:200], 8)
    se = float(np.hypot(before.stderr, after.stderr))
    assert float(after.value) < float(before.value) - 3 * se, (before, after)
    assert float(after.value) > 2.396 - 4 * float(after.stderr)
    np.testing.assert_allclose(hist["loss"], -hist["iwae"])


def test_sampling_helpers_and_bernoulli(x64):
    vae = gaussian_vae(jax.random.key(0), 3, 2, width=8, depth=1)
    assert vae.sample(jax.random.key(1), (5, 4)).shape == (5, 4, 3)
    x = jax.random.normal(jax.random.key(2), (2, 3))
    path = interpolate(vae, x[0], x[1], 5)
    assert path.shape == (5, 3)
    rec = vae.reconstruct(x)
    np.testing.assert_allclose(path[0], rec[0], rtol=1e-10)
    np.testing.assert_allclose(path[-1], rec[1], rtol=1e-10)
    trav = latent_traversal(vae, x[0], 1, jnp.linspace(-2, 2, 4))
    assert trav.shape == (4, 3)
    with pytest.raises(ValueError, match="dim"):
        latent_traversal(vae, x[0], 2, jnp.zeros(3))
    # Bernoulli decoder: log p(x|z) = Σ x log σ(l) + (1 − x) log(1 − σ(l))
    dec = BernoulliDecoder(4, 2, key=jax.random.key(3), width=8, depth=1)
    z = jnp.array([0.3, -0.2])
    xb = jnp.array([1.0, 0.0, 1.0, 1.0])
    p = np.asarray(dec.mean(z))
    manual = np.sum(np.asarray(xb) * np.log(p) + (1 - np.asarray(xb)) * np.log(1 - p))
    assert np.isclose(dec.log_likelihood(xb, z), manual, rtol=1e-10)
    bv = bernoulli_vae(jax.random.key(4), 4, 2, width=8, depth=1)
    assert bv.decoder.sample(jax.random.key(5), z).shape == (4,)
    with pytest.raises(ValueError, match="dimensions must match"):
        VAE(
            DiagonalGaussianNet(3, 2, key=jax.random.key(0)),
            GaussianDecoder(4, 2, key=jax.random.key(0)),
        )
