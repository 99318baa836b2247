"""Diffusion models against exact references: Gaussian data (analytic scores), a 1-D mixture."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physgen
import physgen.diffusion as D

MU = np.array([0.5, -1.0])
S = np.array([0.7, 1.5])


class GaussianScore(eqx.Module):
    """Exact score of ``p_t`` for data ``N(mu, diag s²)``, times ``scale`` (1 = exact)."""

    sde: D.AbstractSDE
    mu: jax.Array
    s: jax.Array
    scale: float = 1.0

    def __call__(self, t, x, c=None):
        a, sig = self.sde.marginal(t)
        return -self.scale * (x - a * self.mu) / (a**2 * self.s**2 + sig**2)


def gaussian_model(sde, scale=1.0, **kw):
    net = GaussianScore(sde, jnp.asarray(MU), jnp.asarray(S), scale)
    return D.DiffusionModel(sde, net, 2, parameterisation="score", **kw)


def gaussian_marginal(sde, t):
    a, sig = sde.marginal(t)
    return a * MU, np.sqrt(a**2 * S**2 + sig**2)


def normal_logpdf(x, m, sd):
    return np.sum(-0.5 * ((x - m) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi), -1)


# -- SDEs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sde", [D.VPSDE(0.1, 20.0), D.VESDE(0.01, 50.0)], ids=["vp", "ve"])
def test_sde_identities(x64, sde):
    t = jnp.linspace(0.01, 1.0, 7)
    # g²/σ² = -dλ/dt, and the log-SNR inverse
    dlam = jax.vmap(jax.grad(sde.log_snr))(t)
    g2_over_s2 = jax.vmap(lambda u: sde.diffusion(u) ** 2 / sde.marginal_std(u) ** 2)(t)
    np.testing.assert_allclose(-dlam, g2_over_s2, rtol=1e-10)
    np.testing.assert_allclose(
        jax.vmap(sde.log_snr_inverse)(jax.vmap(sde.log_snr)(t)), t, rtol=1e-10
    )
    # α' = f α and (σ²)' = 2 f σ² + g² (the kernel solves the SDE's moment equations)
    da = jax.vmap(jax.grad(lambda u: sde.marginal(u)[0]))(t)
    dv = jax.vmap(jax.grad(lambda u: sde.marginal(u)[1] ** 2))(t)
    a, sig = jax.vmap(sde.marginal)(t)
    f, g = jax.vmap(sde.drift_coefficient)(t), jax.vmap(sde.diffusion)(t)
    np.testing.assert_allclose(da, f * a, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(dv, 2 * f * sig**2 + g**2, rtol=1e-10)


@pytest.mark.parametrize("sde", [D.VPSDE(0.1, 20.0), D.VESDE(0.01, 5.0)], ids=["vp", "ve"])
def test_marginals_match_simulated_paths(x64, sde):
    """Euler–Maruyama paths of the forward SDE (diffrax) have the kernel's mean and variance."""
    x0, t, n = jnp.array([1.5, -0.5]), 0.4, 2000
    keys = jax.random.split(jax.random.key(0), n)
    xt = np.asarray(jax.vmap(lambda k: D.simulate_forward(k, sde, x0, t, num_steps=200))(keys))
    alpha, sigma = (float(v) for v in sde.marginal(t))
    mean, var = xt.mean(0), xt.var(0, ddof=1)
    se_mean = np.sqrt(var / n)
    se_var = np.sqrt((np.mean((xt - mean) ** 4, 0) - var**2) / n)
    assert np.all(np.abs(mean - alpha * np.asarray(x0)) < 4 * se_mean), (mean, alpha * x0)
    assert np.all(np.abs(var - sigma**2) < 4 * se_var), (var, sigma**2, se_var)


def test_ddpm_schedule():
    lin = D.DDPMSchedule(1000)
    np.testing.assert_allclose(np.asarray(lin.beta)[[0, -1]], [1e-4, 0.02], rtol=1e-6)
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(np.asarray(lin.alphas_cumprod), abar, rtol=1e-5)
    cos = D.DDPMSchedule(1000, "cosine")
    steps = np.arange(1, 1001) / 1000
    f = np.cos((steps + 0.008) / 1.008 * np.pi / 2) ** 2 / np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(np.asarray(cos.alphas_cumprod)[:900], f[:900], rtol=1e-4)
    assert np.all(np.diff(np.asarray(cos.alphas_cumprod)) < 0)
    with pytest.raises(ValueError, match="kind"):
        D.DDPMSchedule(10, "quadratic")


# -- exact likelihood through the probability-flow ODE -----------------------------------------
@pytest.mark.parametrize(
    "sde,eps", [(D.VPSDE(0.1, 20.0), 1e-3), (D.VESDE(0.01, 50.0), 1e-5)], ids=["vp", "ve"]
)
def test_probability_flow_log_prob_is_exact_for_gaussian_data(x64, sde, eps):
    """With the analytic score, the ODE density equals the analytic one to 1e-4.

    For Gaussian data the probability-flow map is known, ``x_t = α_t μ + √(v_t/v_eps)(x - α_eps
    μ)``, so the model density is ``log p_eps(x) + log π(x_T) - log p_T(x_T)``: the last two
    terms are the (small) mismatch between the prior and ``p_T``.
    """
    model = gaussian_model(sde, eps=eps, rtol=1e-9, atol=1e-9)
    x = np.array([[0.3, 0.2], [1.5, -3.0], [-0.5, 0.5], [2.0, 1.0]])
    m_eps, sd_eps = gaussian_marginal(sde, eps)
    m_T, sd_T = gaussian_marginal(sde, sde.T)
    x_T = m_T + sd_T / sd_eps * (x - m_eps)
    prior = normal_logpdf(x_T, 0.0, sde.prior_std())
    expected = normal_logpdf(x, m_eps, sd_eps) + prior - normal_logpdf(x_T, m_T, sd_T)
    lp = np.asarray(model.log_prob(jnp.asarray(x)))
    np.testing.assert_allclose(lp, expected, atol=1e-4, rtol=0)
    if isinstance(sde, D.VPSDE):  # a sample's log density agrees with log_prob(sample)
        y, lq = model.sample_and_log_prob(jax.random.key(1), (2,))
        np.testing.assert_allclose(np.asarray(model.log_prob(y)), np.asarray(lq), atol=1e-6)


def test_variational_bound_below_exact_log_likelihood(x64):
    sde, eps = D.VPSDE(), 1e-3
    m_eps, sd_eps = gaussian_marginal(sde, eps)
    # exact score: the bound is tight, log p - 4 se < ELBO < log p + 4 se
    exact = gaussian_model(sde, eps=eps)
    x = jnp.array([[0.3, 0.2], [1.5, -3.0]])
    b = exact.variational_bound(jax.random.key(0), x, num_samples=2000)
    lp = np.asarray(exact.log_prob(x))
    z = (np.asarray(b.value) - lp) / np.asarray(b.stderr)
    assert np.all(np.abs(z) < 4), z
    # a wrong score: averaged over data, the bound lies below E[log p] by many standard errors
    wrong = gaussian_model(sde, scale=0.7, eps=eps)
    xs = m_eps + sd_eps * np.asarray(jax.random.normal(jax.random.key(2), (500, 2), jnp.float64))
    gap = np.asarray(
        wrong.variational_bound(jax.random.key(3), jnp.asarray(xs), num_samples=16).value
    ) - normal_logpdf(xs, m_eps, sd_eps)
    assert gap.mean() + 4 * gap.std(ddof=1) / math.sqrt(gap.size) < 0, gap.mean()


# -- denoising score matching ----------------------------------------------------------------
def _dsm_minimum(sde, eps, weighting):
    """``E_{t~U(eps,T)} λ(t)/σ² Σ_i (1 - σ²/v_i)`` for Gaussian data, by Gauss–Legendre."""
    nodes, w = np.polynomial.legendre.leggauss(200)
    # Gauss–Legendre in log t (the integrand varies on the scale of t near eps)
    lo, hi = math.log(eps), math.log(sde.T)
    s = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
    t = np.exp(s)
    a, sig = (np.asarray(v) for v in jax.vmap(sde.marginal)(jnp.asarray(t)))
    v = a[:, None] ** 2 * S**2 + sig[:, None] ** 2
    per = np.sum(1.0 - sig[:, None] ** 2 / v, -1)
    if weighting == "likelihood":
        per = per * np.asarray(jax.vmap(sde.diffusion)(jnp.asarray(t))) ** 2 / sig**2
    return float(np.sum(w * 0.5 * (hi - lo) * t * per) / (sde.T - eps))


@pytest.mark.parametrize(
    "weighting,importance_sampling",
    [("sigma2", False), ("likelihood", False), ("likelihood", True)],
)
def test_dsm_loss_of_analytic_score_is_the_known_minimum(x64, weighting, importance_sampling):
    sde, eps = D.VPSDE(), 1e-2
    objective = D.DenoisingScoreMatching(weighting, importance_sampling=importance_sampling)
    data = jnp.asarray(
        MU + S * np.asarray(jax.random.normal(jax.random.key(0), (4000, 2), jnp.float64))
    )

    @eqx.filter_jit
    def losses(model):
        keys = jax.random.split(jax.random.key(1), 40)
        return jax.vmap(lambda k: objective.loss(model, k, data, None, 0)[0])(keys)

    exact = np.asarray(losses(gaussian_model(sde, eps=eps)))
    mean, se = exact.mean(), exact.std(ddof=1) / math.sqrt(exact.size)
    expected = _dsm_minimum(sde, eps, weighting)
    assert abs(mean - expected) < 4 * se, (mean, se, expected)
    # a perturbed score raises the loss (same random numbers: the difference is ≥ 0 in mean)
    for scale in (0.9, 1.1):
        diff = np.asarray(losses(gaussian_model(sde, scale, eps=eps))) - exact
        assert diff.mean() > 4 * diff.std(ddof=1) / math.sqrt(diff.size), (scale, diff.mean())


def test_ddpm_loss_and_fit_decrease():
    """A small network trained by fit with the DDPM loss and with DSM: the loss goes down."""
    data = jax.random.normal(jax.random.key(0), (512, 2)) * 0.5 + 1.0
    model = D.diffusion_model(jax.random.key(1), 2, width=16, depth=2)
    for obj in (D.DDPMLoss(D.DDPMSchedule(100)), D.DenoisingScoreMatching()):
        _, hist, _ = physgen.fit(
            jax.random.key(2),
            model,
            obj,
            steps=150,
            data=data,
            batch_size=64,
            learning_rate=3e-3,
            progress=False,
        )
        assert hist["loss"][-50:].mean() < 0.7 * hist["loss"][:20].mean()


# -- samplers --------------------------------------------------------------------------------
class MixtureEpsilon(eqx.Module):
    """Exact noise prediction of a 1-D Gaussian mixture on the discrete DDPM chain."""

    abar: jax.Array
    means: jax.Array
    scales: jax.Array
    log_w: jax.Array
    num_steps: int = eqx.field(static=True)

    def __call__(self, t, x, c=None):
        n = jnp.round(t * self.num_steps).astype(jnp.int32)
        ab = self.abar[n - 1]
        var = ab * self.scales**2 + 1.0 - ab
        comp = self.log_w - 0.5 * (x[0] - jnp.sqrt(ab) * self.means) ** 2 / var - 0.5 * jnp.log(var)
        r = jax.nn.softmax(comp)
        score = jnp.sum(r * -(x[0] - jnp.sqrt(ab) * self.means) / var)
        return -jnp.sqrt(1.0 - ab) * score[None]


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ddpm_ancestral_sampler_reproduces_mixture_moments(kind):
    means, scales, w = np.array([-2.0, 1.5]), np.array([0.5, 0.8]), np.array([0.3, 0.7])
    schedule = D.DDPMSchedule(1000, kind)
    net = MixtureEpsilon(
        schedule.alphas_cumprod,
        jnp.asarray(means, jnp.float32),
        jnp.asarray(scales, jnp.float32),
        jnp.log(jnp.asarray(w, jnp.float32)),
        1000,
    )
    model = D.DiffusionModel(D.VPSDE(0.1, 20.0), net, 1)
    n = 20_000
    x = np.asarray(D.ddpm_sample(jax.random.key(0), model, schedule, (n,)), np.float64)[:, 0]
    mean = float(np.sum(w * means))
    var = float(np.sum(w * (scales**2 + means**2)) - mean**2)
    m, v = x.mean(), x.var(ddof=1)
    se_m, se_v = math.sqrt(v / n), math.sqrt((np.mean((x - m) ** 4) - v**2) / n)
    assert abs(m - mean) < 4 * se_m, (m, mean, se_m)
    assert abs(v - var) < 4 * se_v, (v, var, se_v)
    # the weight of the left mode (a binomial proportion)
    p = np.mean(x < -0.25)
    assert abs(p - w[0]) < 4 * math.sqrt(w[0] * w[1] / n)


@pytest.mark.parametrize("sampler", ["reverse_sde", "probability_flow"])
def test_samplers_reproduce_gaussian_moments(x64, sampler):
    sde, eps, n = D.VPSDE(), 1e-3, 2000
    model = gaussian_model(sde, eps=eps)
    if sampler == "reverse_sde":
        x = D.reverse_sde_sample(jax.random.key(0), model, (n,), num_steps=300)
    else:
        x = model.sample(jax.random.key(0), (n,))
    x = np.asarray(x)
    mean, sd = gaussian_marginal(sde, eps)
    m, v = x.mean(0), x.var(0, ddof=1)
    assert np.all(np.abs(m - mean) < 4 * np.sqrt(v / n)), (m, mean)
    assert np.all(np.abs(v - sd**2) < 4 * sd**2 * math.sqrt(2 / n)), (v, sd**2)


# -- conditional models and classifier-free guidance -----------------------------------------
class ConditionalGaussianScore(eqx.Module):
    """``p(x|c) = N(c, s²)`` per entry, ``c ∈ {-1, +1}`` equally likely; the null condition
    (flag 0) gives the score of the unconditional mixture."""

    sde: D.AbstractSDE
    s: float = 0.5

    def __call__(self, t, x, c):
        a, sig = self.sde.marginal(t)
        v = a**2 * self.s**2 + sig**2
        cond = -(x - a * c[0]) / v
        lp = jnp.stack([-0.5 * jnp.sum((x - a * m) ** 2) / v for m in (-1.0, 1.0)])
        r = jax.nn.softmax(lp)
        unc = -(x - a * (r[1] - r[0])) / v
        return jnp.where(c[-1] > 0.5, cond, unc)


def test_conditional_log_prob_guidance_and_dropout(x64):
    sde, eps = D.VPSDE(), 1e-3
    model = D.DiffusionModel(
        sde,
        ConditionalGaussianScore(sde),
        2,
        cond_shape=(1,),
        parameterisation="score",
        eps=eps,
        rtol=1e-9,
        atol=1e-9,
    )
    # the condition reaches the ODE: exact conditional log-density of x(eps) given c = +1
    # (with the prior mismatch at T, as in the unconditional test)
    (a, sig), (a_T, sig_T) = ((float(v) for v in sde.marginal(u)) for u in (eps, sde.T))
    sd, sd_T = math.sqrt(a**2 * 0.25 + sig**2), math.sqrt(a_T**2 * 0.25 + sig_T**2)
    x = np.array([[0.8, 1.3], [-0.2, 0.4]])
    c = jnp.array([1.0])
    x_T = a_T + sd_T / sd * (x - a)
    expected = (
        normal_logpdf(x, a, sd) + normal_logpdf(x_T, 0.0, 1.0) - normal_logpdf(x_T, a_T, sd_T)
    )
    np.testing.assert_allclose(np.asarray(model.log_prob(jnp.asarray(x), c)), expected, atol=1e-4)
    # guided score (1 + w) s(x|c) - w s(x)
    w = 2.0
    guided = model.with_guidance(w)
    t, xi = 0.3, jnp.array([0.2, -0.1])
    s_c = model.score(t, xi, c)
    s_u = -model.noise_prediction(t, xi, c, drop=True) / sde.marginal_std(t)
    np.testing.assert_allclose(
        np.asarray(guided.score(t, xi, c)), np.asarray((1 + w) * s_c - w * s_u), rtol=1e-12
    )
    # guidance pushes samples further into the conditioned mode
    xs = np.asarray(guided.sample(jax.random.key(0), (200,), c))
    xs0 = np.asarray(model.sample(jax.random.key(0), (200,), c))
    assert xs.mean() > xs0.mean() > 0.5
    # dropout 1 trains the unconditional score only: the loss is the null-condition loss
    data = (jax.random.normal(jax.random.key(1), (256, 2)), jnp.ones((256, 1)))
    k2 = jax.random.key(2)
    drop_all = D.DenoisingScoreMatching(condition_dropout=1.0).loss(model, k2, data, None, 0)
    keep = D.DenoisingScoreMatching().loss(model, k2, data, None, 0)
    unc = D.DiffusionModel(
        sde,
        eqx.Partial(lambda t, x, c: ConditionalGaussianScore(sde)(t, x, jnp.zeros(2))),
        2,
        parameterisation="score",
        eps=eps,
    )
    ref = D.DenoisingScoreMatching().loss(unc, jax.random.key(2), data[0], None, 0)
    np.testing.assert_allclose(float(drop_all[0]), float(ref[0]), rtol=1e-12)
    # with the condition kept, the loss is the conditioned model's: clearly another number
    assert abs(float(keep[0]) - float(drop_all[0])) > 0.05 * abs(float(drop_all[0])), (
        keep[0], drop_all[0])
    with pytest.raises(ValueError, match="conditional"):
        D.DenoisingScoreMatching().loss(model, jax.random.key(2), data[0], None, 0)


def test_errors():
    with pytest.raises(ValueError, match="parameterisation"):
        D.diffusion_model(jax.random.key(0), 2, parameterisation="velocity")
    with pytest.raises(ValueError, match="weighting"):
        D.DenoisingScoreMatching("snr")
    with pytest.raises(ValueError, match="eps"):
        D.diffusion_model(jax.random.key(0), 2, eps=0.0)
    with pytest.raises(ValueError, match="min < max"):
        D.VPSDE(20.0, 0.1)
    model = D.diffusion_model(jax.random.key(0), 2, width=8, depth=1)
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="guidance"):
        model.with_guidance(1.0)


def test_fit_trains_a_conditional_diffusion_model_on_pairs():
    """``fit`` with ``data=(x, c)``: ``x | c ~ N(2c, 0.3²)``, ``c = ±1``; the trained
    conditional model must use the condition (shuffled rows would leave it unconditional)."""
    from physgen.nn import VectorFieldMLP

    kc, kx = jax.random.split(jax.random.key(1))
    c = jnp.where(jax.random.bernoulli(kc, 0.5, (4000, 1)), 1.0, -1.0)
    x = 2.0 * c + 0.3 * jax.random.normal(kx, (4000, 1))
    net = VectorFieldMLP(jax.random.key(0), 1, width=32, depth=2, cond_dim=2)
    model = D.DiffusionModel(D.VPSDE(), net, 1, cond_shape=(1,))
    objective = D.DenoisingScoreMatching(condition_dropout=0.1)
    model, _, _ = physgen.fit(jax.random.key(2), model, objective, data=(x, c), steps=600,
                           learning_rate=3e-3, batch_size=256, progress=False)
    keys = jax.random.split(jax.random.key(3), 8)
    matched = np.mean([float(objective.loss(model, k, (x, c), None, 0)[0]) for k in keys])
    flipped = np.mean([float(objective.loss(model, k, (x, -c), None, 0)[0]) for k in keys])
    assert matched < 0.8 * flipped
    ys = np.asarray(model.sample(jax.random.key(4), (300,), jnp.ones(1)))
    assert abs(ys.mean() - 2.0) < 0.3
