import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from physgen.distributions import DiagNormal, GaussianMixture, StandardNormal, Z2Symmetrized

KEY = jax.random.key(0)


def _distributions():
    return {
        "standard_normal": StandardNormal((3,)),
        "diag_normal": DiagNormal(jnp.array([0.5, -1.0, 2.0]), jnp.array([0.3, 1.0, 2.5])),
        "mixture": GaussianMixture(
            jnp.array([[0.0, 1.0, 2.0], [-2.0, 0.0, 1.0]]),
            jnp.array([[0.5, 1.0, 1.5], [1.0, 0.7, 0.2]]),
            jnp.array([0.3, 0.7]),
        ),
        "z2_symmetrized": Z2Symmetrized(
            DiagNormal(jnp.array([0.5, -1.0, 2.0]), jnp.array([0.3, 1.0, 2.5]))
        ),
    }


@pytest.mark.parametrize("name", list(_distributions()))
def test_sample_and_log_prob_agree(name):
    d = _distributions()[name]
    x, lp = d.sample_and_log_prob(KEY, (4, 5))
    assert x.shape == (4, 5, 3) and lp.shape == (4, 5)
    np.testing.assert_allclose(lp, d.log_prob(x), rtol=1e-5, atol=1e-5)
    x2 = d.sample(KEY, (4, 5))
    np.testing.assert_allclose(x2, x, rtol=1e-6)
    assert d.log_prob(x[0, 0]).shape == ()


def test_log_probs_match_scipy():
    d = _distributions()
    x = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    np.testing.assert_allclose(
        d["standard_normal"].log_prob(x), stats.norm.logpdf(x).sum(-1), rtol=1e-5
    )
    dn = d["diag_normal"]
    np.testing.assert_allclose(
        dn.log_prob(x),
        stats.norm.logpdf(x, [0.5, -1.0, 2.0], [0.3, 1.0, 2.5]).sum(-1),
        rtol=1e-5,
    )
    gm = d["mixture"]
    comp = [
        stats.norm.logpdf(x, [0.0, 1.0, 2.0], [0.5, 1.0, 1.5]).sum(-1) + math.log(0.3),
        stats.norm.logpdf(x, [-2.0, 0.0, 1.0], [1.0, 0.7, 0.2]).sum(-1) + math.log(0.7),
    ]
    np.testing.assert_allclose(gm.log_prob(x), np.logaddexp(*comp), rtol=1e-5)


def test_mixture_integrates_to_one_in_1d(x64):
    gm = GaussianMixture(jnp.array([[-1.0], [2.0]]), jnp.array([[0.4], [0.9]]), jnp.array([1, 3]))
    grid = jnp.linspace(-10, 12, 20001)
    p = jnp.exp(gm.log_prob(grid[:, None]))
    assert abs(float(jnp.trapezoid(p, grid)) - 1.0) < 1e-9


def test_sample_moments_mixture():
    gm = _distributions()["mixture"]
    x = gm.sample(jax.random.key(3), (200_000,))
    mean = 0.3 * np.array([0.0, 1.0, 2.0]) + 0.7 * np.array([-2.0, 0.0, 1.0])
    se = np.std(np.asarray(x), 0) / math.sqrt(x.shape[0])
    assert np.all(np.abs(np.mean(np.asarray(x), 0) - mean) < 4 * se)


def test_wrong_event_shape_is_refused():
    with pytest.raises(ValueError, match=r"trailing \(event\) dimensions must be \(3,\)"):
        StandardNormal((3,)).log_prob(jnp.zeros((10, 2)))
    with pytest.raises(ValueError, match="positive"):
        DiagNormal(jnp.zeros(2), jnp.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="unconditional"):
        StandardNormal((3,)).log_prob(jnp.zeros(3), condition=jnp.zeros(1))


def test_z2_symmetrized_is_the_mirrored_gaussian_mixture():
    """½[N(μ, σ²) + N(−μ, σ²)] exactly, against scipy; and log q(−x) = log q(x)."""
    mu, sigma = np.array([0.5, -1.0, 2.0]), np.array([0.3, 1.0, 2.5])
    q = Z2Symmetrized(DiagNormal(jnp.asarray(mu), jnp.asarray(sigma)))
    x = np.random.default_rng(1).normal(size=(9, 3)).astype(np.float32)
    exact = np.logaddexp(
        stats.norm.logpdf(x, mu, sigma).sum(-1), stats.norm.logpdf(x, -mu, sigma).sum(-1)
    ) - math.log(2)
    np.testing.assert_allclose(q.log_prob(x), exact, rtol=1e-5)
    np.testing.assert_allclose(q.log_prob(-x), q.log_prob(x), rtol=1e-6)


def test_z2_symmetrized_integrates_to_one_in_1d(x64):
    q = Z2Symmetrized(DiagNormal(jnp.array([1.3]), jnp.array([0.4])))
    grid = jnp.linspace(-8, 8, 20001)
    assert abs(float(jnp.trapezoid(jnp.exp(q.log_prob(grid[:, None])), grid)) - 1.0) < 1e-9


def test_z2_symmetrized_samples_both_mirror_images_equally():
    """Each sample is ±x₀ with probability ½: mean 0 and E[x²] = μ² + σ², within 4 SE."""
    mu, sigma = np.array([2.0, -1.0]), np.array([0.5, 0.8])
    q = Z2Symmetrized(DiagNormal(jnp.asarray(mu), jnp.asarray(sigma)))
    x = np.asarray(q.sample(jax.random.key(5), (100_000,)), np.float64)
    se = np.std(x, 0) / math.sqrt(len(x))
    assert np.all(np.abs(np.mean(x, 0)) < 4 * se)
    x2, se2 = np.mean(x**2, 0), np.std(x**2, 0) / math.sqrt(len(x))
    assert np.all(np.abs(x2 - (mu**2 + sigma**2)) < 4 * se2)
    # the sign of the first coordinate picks the mirror image: a fair coin
    frac = np.mean(x[:, 0] > 0)
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / len(x))


def test_z2_symmetrized_refuses_a_model_without_density():
    with pytest.raises(TypeError, match="AbstractDistribution"):
        Z2Symmetrized(lambda x: x)


def test_rings_closed_form_is_the_gaussian_averaged_over_each_circle(x64):
    """The Bessel form equals the noise Gaussian averaged over 4,096 equally spaced points of
    each circle (NumPy, float64; the trapezoidal rule is spectrally accurate on a circle), at
    random points, at the origin and far outside; its gradient is finite at the origin."""
    from scipy.special import logsumexp

    from physgen.datasets import Rings

    ds = Rings()
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-4, 4, (200, 2)), [[0.0, 0.0], [9.0, -7.0]]])
    a = 2 * np.pi * np.arange(4096) / 4096
    s2 = ds.noise**2
    nodes = np.concatenate([r * np.stack([np.cos(a), np.sin(a)], -1) for r in ds.radii])
    d2 = np.sum((x[:, None, :] - nodes[None]) ** 2, -1)
    ref = logsumexp(-d2 / (2 * s2), axis=1) - np.log(len(nodes)) - np.log(2 * np.pi * s2)
    got = np.asarray(ds.log_prob(jnp.asarray(x)))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-10)
    assert got[-1] < -1000 and np.isfinite(got[-1])  # far out: no underflow to -inf
    grad = jax.grad(lambda y: ds.log_prob(y[None])[0])(jnp.zeros(2))
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


@pytest.mark.parametrize("name, entropy", [("moons", 2.3957), ("8gaussians", 2.8327),
                                           ("rings", 2.6237), ("checkerboard", 3.4657)])
def test_toy_densities_integrate_to_one_and_have_the_reference_entropy(x64, name, entropy):
    """Each toy set's exact density integrates to 1 on a fine grid over its support, and its
    Monte Carlo entropy matches the quadrature reference (±0.003 in the reference file)."""
    from physgen.datasets import get_dataset

    ds = get_dataset(name)
    n, lim = 360, 6.0  # cell edges on the integers, where the checkerboard jumps
    h = 2 * lim / n
    c = -lim + h * (np.arange(n) + 0.5)
    g1, g2 = np.meshgrid(c, c)
    pts = jnp.asarray(np.stack([g1.ravel(), g2.ravel()], -1))
    mass = float(jnp.sum(jnp.exp(jax.jit(ds.log_prob)(pts))) * h * h)
    assert abs(mass - 1.0) < 2e-3, mass
    value, se = ds.entropy(jax.random.key(0), 20_000)
    assert abs(value - entropy) < 4 * se + 0.003, (value, se)
