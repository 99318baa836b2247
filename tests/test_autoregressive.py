"""The autoregressive mixture density: normalised (2-D quadrature), autoregressive, and its
samples follow its density (moments by quadrature vs sample moments)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physgen
from physgen.autoregressive import AutoregressiveMixture


def _random_model(dim, key):
    """A model whose conditionals depend strongly on the earlier coordinates."""
    m = AutoregressiveMixture(dim, key=key, num_components=3, width=16, depth=1)
    return eqx.tree_at(lambda t: t.net.layers[-1].weight, m, 10 * m.net.layers[-1].weight)


def _grid(lim=9.0, n=500):
    h = 2 * lim / n
    c = -lim + h * (np.arange(n) + 0.5)
    g1, g2 = np.meshgrid(c, c, indexing="ij")
    return np.stack([g1.ravel(), g2.ravel()], -1), h


def test_density_integrates_to_one_and_matches_samples(x64):
    model = _random_model(2, jax.random.key(0))
    pts, h = _grid()
    p = np.exp(np.asarray(eqx.filter_jit(model.log_prob)(jnp.asarray(pts))))
    mass = p.sum() * h * h
    assert abs(mass - 1.0) < 1e-4
    # first and second moments by quadrature vs from sequential samples
    w = p * h * h / mass
    mean_q = w @ pts
    second_q = (pts * w[:, None]).T @ pts
    n = 40_000
    xs = np.asarray(eqx.filter_jit(lambda k: model.sample(k, (n,)))(jax.random.key(1)))
    feats = np.concatenate(
        [xs, np.stack([xs[:, 0] ** 2, xs[:, 0] * xs[:, 1], xs[:, 1] ** 2], 1)], 1
    )
    exact = np.array([mean_q[0], mean_q[1], second_q[0, 0], second_q[0, 1], second_q[1, 1]])
    se = feats.std(0) / math.sqrt(n)
    assert np.all(np.abs(feats.mean(0) - exact) < 4.5 * se)
    # a non-trivial (non-Gaussian, correlated) density: the check has teeth
    assert abs(second_q[0, 1] - mean_q[0] * mean_q[1]) > 5 * se[3]


def test_one_dimensional_density_integrates_to_one(x64):
    model = _random_model(1, jax.random.key(3))
    h = 0.002
    x = jnp.asarray(-12 + h * (np.arange(12_000) + 0.5))[:, None]
    assert abs(float(jnp.sum(jnp.exp(model.log_prob(x)))) * h - 1) < 1e-6


def test_sample_and_log_prob_and_autoregressive_structure(x64):
    model = _random_model(4, jax.random.key(1))
    x, lp = eqx.filter_jit(lambda m, k: m.sample_and_log_prob(k, (6,)))(model, jax.random.key(2))
    assert x.shape == (6, 4) and lp.shape == (6,)
    np.testing.assert_allclose(lp, model.log_prob(x), rtol=1e-12)
    # conditional i depends only on x_{<i}: the Jacobian of its parameters is strictly lower
    jac = eqx.filter_jit(jax.jacobian(lambda v: jnp.concatenate(model.conditionals(v), -1)))(x[0])
    # jac: (dim, 3K, dim); entries (i, :, j) must vanish for j >= i
    upper = np.triu(np.ones((4, 4), bool))
    assert np.all(np.asarray(jnp.abs(jac)).max(1)[upper] == 0)
    assert np.asarray(jnp.abs(jac)).max(1)[~upper].min() > 0


def test_fit_lowers_nll_and_errors():
    data = physgen.datasets.get_dataset("moons").sample(jax.random.key(0), 2000)
    model = AutoregressiveMixture(2, key=jax.random.key(1), num_components=4, width=16)
    model, hist, _ = physgen.fit(
        jax.random.key(2),
        model,
        physgen.objectives.MaximumLikelihood(),
        data=data,
        steps=200,
        batch_size=128,
        learning_rate=3e-3,
        progress=False,
    )
    assert hist["nll"][-20:].mean() < hist["nll"][:20].mean() - 0.5
    with pytest.raises(ValueError, match="num_components"):
        AutoregressiveMixture(2, key=jax.random.key(0), num_components=0)
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(jnp.zeros(3))
