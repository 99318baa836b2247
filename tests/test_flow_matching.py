"""Flow matching: paths, the CFM loss at its analytic optimum (Gaussian → Gaussian), the exact
likelihood of the optimal flow, minibatch OT coupling, and a short training run."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physgen
from physgen.bijections import ContinuousFlow
from physgen.distributions import DiagNormal, StandardNormal, Transformed
from physgen.flow_matching import (
    FlowMatching,
    LinearPath,
    VPPath,
    flow_matching_loss,
    ot_coupling,
    sinkhorn_log_plan,
)
from physgen.flows import cnf

MU = jnp.array([1.5, -0.5])
S = 0.4  # data N(MU, S² I), noise N(0, I)


class OptimalGaussianField(eqx.Module):
    """The marginal field ``E[u_t | x_t = x]`` for ``x0 ~ N(0, I)``, ``x1 ~ N(μ, s² I)`` on the
    path ``x_t = a x1 + b x0``: ``a'μ + (a a' s² + b b')/(a² s² + b²) (x - aμ)``."""

    path: eqx.Module
    mu: jax.Array
    s: float

    def __call__(self, t, x, condition=None):
        (a, b), (da, db) = jax.jvp(self.path.coefficients, (t,), (jnp.ones_like(t),))
        slope = (a * da * self.s**2 + b * db) / (a**2 * self.s**2 + b**2)
        return da * self.mu + slope * (x - a * self.mu)

    def min_loss(self, t):
        """``E Var[u_t | x_t]`` summed over dimensions: the CFM loss of the optimum at ``t``."""
        (a, b), (da, db) = jax.jvp(self.path.coefficients, (t,), (jnp.ones_like(t),))
        var_u = da**2 * self.s**2 + db**2
        cov = a * da * self.s**2 + b * db
        return self.mu.size * (var_u - cov**2 / (a**2 * self.s**2 + b**2))


@pytest.mark.parametrize("path", [LinearPath(), LinearPath(sigma_min=0.1), VPPath()])
def test_path_velocity_is_the_time_derivative(x64, path):
    x0, x1 = jnp.array([0.3, -1.0]), jnp.array([1.2, 0.4])
    for t in (0.1, 0.5, 0.9):
        h = 1e-6
        fd = (path.sample(t + h, x0, x1) - path.sample(t - h, x0, x1)) / (2 * h)
        np.testing.assert_allclose(path.velocity(t, x0, x1), fd, rtol=1e-6, atol=1e-8)
    a, b = path.coefficients(jnp.asarray(path.t_max))
    assert abs(float(a) - 1) < 1e-2 and float(b) < 0.11
    if isinstance(path, VPPath):  # variance preserving
        for t in (0.0, 0.3, 0.99):
            a, b = path.coefficients(jnp.asarray(t))
            assert abs(float(a**2 + b**2) - 1) < 1e-12


@pytest.mark.parametrize("path", [LinearPath(), VPPath()])
def test_loss_of_the_analytic_field_is_at_the_minimum(x64, path):
    field = OptimalGaussianField(path, MU, S)
    n = 200_000
    k0, k1, kt = jax.random.split(jax.random.key(0), 3)
    x0 = jax.random.normal(k0, (n, 2))
    x1 = MU + S * jax.random.normal(k1, (n, 2))
    t = jax.random.uniform(kt, (n,), minval=path.t_min, maxval=path.t_max)

    def per_example(eps):
        # v* + eps·δ with a smooth perturbation δ; L(eps) is quadratic with its minimum at 0
        def v(ti, xi, c=None):
            return field(ti, xi) + eps * jnp.array([jnp.sin(xi[1]) * ti, jnp.cos(xi[0])])

        xt, ut = jax.vmap(path.sample_and_velocity)(t, x0, x1)
        return jnp.sum((jax.vmap(v)(t, xt) - ut) ** 2, -1)

    loss, _ = flow_matching_loss(field, path, t, x0, x1)
    l0 = per_example(0.0)
    assert abs(float(loss) - float(jnp.mean(l0))) < 1e-10
    # the value: E_t E Var[u|x_t], computed analytically per draw of t
    ref = jax.vmap(field.min_loss)(t)
    diff = l0 - ref
    assert abs(float(jnp.mean(diff))) < 4 * float(jnp.std(diff)) / math.sqrt(n)
    # stationary: dL/deps at 0 vanishes within Monte Carlo error, and the loss grows off it
    d = jax.jacfwd(per_example)(0.0)
    assert abs(float(jnp.mean(d))) < 4 * float(jnp.std(d)) / math.sqrt(n)
    assert float(jnp.mean(per_example(0.3))) > float(jnp.mean(l0)) + 1e-3


def test_optimal_field_flow_has_the_exact_gaussian_log_density(x64):
    """The ContinuousFlow of the optimal linear-path field maps N(0, I) onto N(μ, s² I)."""
    path = VPPath()
    field = OptimalGaussianField(path, MU, S)
    t1 = path.t_max
    a0, b0 = path.coefficients(jnp.asarray(0.0))
    a1, b1 = path.coefficients(jnp.asarray(t1))
    # at t0 = 0 the path's marginal is N(a0 μ, a0² s² + b0²), at t1 N(a1 μ, a1² s² + b1²)
    base = DiagNormal(a0 * MU, jnp.sqrt(a0**2 * S**2 + b0**2) * jnp.ones(2))
    flow = Transformed(base, ContinuousFlow(field, 2, t1=t1, rtol=1e-10, atol=1e-10))
    lin = Transformed(
        StandardNormal((2,)),
        ContinuousFlow(OptimalGaussianField(LinearPath(), MU, S), 2, rtol=1e-10, atol=1e-10),
    )
    x = MU + jax.random.normal(jax.random.key(1), (6, 2))
    lp, lp_lin = eqx.filter_jit(lambda f, g: (f.log_prob(x), g.log_prob(x)))(flow, lin)
    sd = jnp.sqrt(a1**2 * S**2 + b1**2)
    exact = jnp.sum(jax.scipy.stats.norm.logpdf(x, a1 * MU, sd), -1)
    np.testing.assert_allclose(lp, exact, atol=1e-6)
    exact_lin = jnp.sum(jax.scipy.stats.norm.logpdf(x, MU, S), -1)
    np.testing.assert_allclose(lp_lin, exact_lin, atol=1e-6)


def test_ot_coupling_reduces_transport_cost():
    k0, k1, k2 = jax.random.split(jax.random.key(0), 3)
    n = 128
    x0 = jax.random.normal(k0, (n, 2))
    x1 = jnp.array([2.0, 0.0]) + 0.5 * jax.random.normal(k1, (n, 2))
    x0c, x1c = jax.jit(ot_coupling)(k2, x0, x1)
    plan = jnp.exp(jax.jit(sinkhorn_log_plan)(x0, x1))
    np.testing.assert_allclose(plan.sum(0), 1 / n, rtol=1e-3)  # uniform marginals
    np.testing.assert_allclose(plan.sum(1), 1 / n, rtol=2e-2)
    independent = float(jnp.mean(jnp.sum((x0 - x1) ** 2, -1)))
    coupled = float(jnp.mean(jnp.sum((x0c - x1c) ** 2, -1)))
    assert coupled < independent - 1.0
    # pairs are drawn from the plan: rows of x0 and x1 that exist in the batch
    assert bool(jnp.all(jnp.any(jnp.all(x0c[:, None] == x0[None], -1), -1)))
    scipy_opt = pytest.importorskip("scipy.optimize")
    cost = np.asarray(jnp.sum((x0[:, None] - x1[None]) ** 2, -1))
    r, c = scipy_opt.linear_sum_assignment(cost)
    exact = float(cost[r, c].mean())
    # the entropic plan's cost is close to the exact assignment's; pairs drawn from it scatter
    # around that cost
    plan_cost = float(jnp.sum(plan * cost))
    assert exact - 1e-3 < plan_cost < exact + 0.1 * (independent - exact)
    assert abs(coupled - plan_cost) < 0.2 * (independent - exact)


@pytest.mark.slow
def test_flow_matching_trains_a_continuous_flow_with_exact_likelihood():
    data = MU + S * jax.random.normal(jax.random.key(0), (4000, 2))
    model = cnf(jax.random.key(1), 2, width=32, depth=2, embed_dim=8)
    model, hist, _ = physgen.fit(
        jax.random.key(2),
        model,
        FlowMatching(ot_coupling=True),
        data=data,
        steps=300,
        learning_rate=3e-3,
        batch_size=256,
        progress=False,
    )
    assert isinstance(model.bijection, ContinuousFlow)
    test = MU + S * jax.random.normal(jax.random.key(3), (500, 2))
    lp = eqx.filter_jit(lambda m, x: m.log_prob(x))(model, test)
    exact = jnp.sum(jax.scipy.stats.norm.logpdf(test, MU, S), -1)
    nll_gap = float(jnp.mean(exact - lp))  # KL(p‖q) estimate
    assert nll_gap < 0.05
    assert float(jnp.mean(jnp.abs(lp - exact))) < 0.15


def test_flow_matching_errors():
    data = jnp.zeros((8, 2))
    with pytest.raises(TypeError, match="ContinuousFlow"):
        FlowMatching().loss(StandardNormal((2,)), jax.random.key(0), data, None, 0)
    backward = cnf(jax.random.key(0), 2, width=4, depth=1, embed_dim=2, t0=1.0, t1=0.0)
    with pytest.raises(ValueError, match="t0"):
        FlowMatching().loss(backward, jax.random.key(0), data, None, 0)
    with pytest.raises(ValueError, match="data"):
        FlowMatching().loss(cnf(jax.random.key(0), 2), jax.random.key(0), None, None, 0)
    with pytest.raises(ValueError, match="sigma_min"):
        LinearPath(sigma_min=1.0)
