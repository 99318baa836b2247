"""ContinuousFlow (CNF through diffrax), time-conditioned networks, the cnf factory and CNF
maximum likelihood: exact references for linear fields, round trips, Hutchinson's estimator,
normalisation, errors."""

from __future__ import annotations

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physgen.bijections import AbstractBijection, ContinuousFlow
from physgen.distributions import StandardNormal, Transformed
from physgen.flows import cnf
from physgen.nn import FourierTimeEmbedding, VectorFieldMLP
from physgen.objectives._cnf_likelihood import CNFMaximumLikelihood


class LinearField(eqx.Module):
    """``v(t, x) = A x + b``: ``x(t) = e^{At} x0 + A⁻¹(e^{At} - I) b``, ``tr ∂v/∂x = tr A``."""

    A: jax.Array
    b: jax.Array

    def __call__(self, t, x, condition=None):
        return self.A @ x + self.b


def _matrix(dim=3, seed=0):
    return 0.4 * jax.random.normal(jax.random.key(seed), (dim, dim))


def _mlp_flow(key, dim=3, **kw):
    field = VectorFieldMLP(key, dim, width=16, depth=2, embed_dim=8)
    return ContinuousFlow(field, dim, **kw)


@eqx.filter_jit
def _there_and_back(flow, x):
    y, ld = flow.transform_and_log_det(x)
    return y, ld, *flow.inverse_and_log_det(y)


@pytest.mark.parametrize("t0, t1", [(0.0, 0.7), (1.0, 0.2)])
def test_linear_field_log_det_is_t_trace(x64, t0, t1):
    A = _matrix()
    flow = ContinuousFlow(LinearField(A, jnp.zeros(3)), 3, t0=t0, t1=t1, rtol=1e-11, atol=1e-11)
    x0 = jnp.array([0.3, -1.2, 0.8])
    y, ld, x, ld_inv = _there_and_back(flow, x0)
    t = t1 - t0  # negative: backward in time
    np.testing.assert_allclose(y, jax.scipy.linalg.expm(A * t) @ x0, atol=1e-8)
    assert abs(float(ld) - t * float(jnp.trace(A))) < 1e-6
    # the inverse carries y back with the opposite log-det
    np.testing.assert_allclose(x, x0, atol=1e-8)
    assert abs(float(ld + ld_inv)) < 1e-9


def test_affine_field_density_is_the_gaussian_pushforward(x64):
    # x(1) = M x0 + c with M = e^A, c = A⁻¹(M - I) b, so q = N(c, M Mᵀ)
    A, b = _matrix(2, 3), jnp.array([0.5, -0.3])
    flow = Transformed(
        StandardNormal((2,)), ContinuousFlow(LinearField(A, b), 2, rtol=1e-11, atol=1e-11)
    )
    M = jax.scipy.linalg.expm(A)
    c = jnp.linalg.solve(A, (M - jnp.eye(2)) @ b)
    x = jax.random.normal(jax.random.key(1), (7, 2)) * 2
    exact = jax.scipy.stats.multivariate_normal.logpdf(x, c, M @ M.T)

    @eqx.filter_jit
    def run(flow):
        s, lp = flow.sample_and_log_prob(jax.random.key(2), (5,))
        return flow.log_prob(x), lp, flow.log_prob(s)

    lp_x, lp_s, lp_s2 = run(flow)
    np.testing.assert_allclose(lp_x, exact, atol=1e-6)
    np.testing.assert_allclose(lp_s, lp_s2, atol=1e-6)


def test_fixed_step_euler_goes_through_diffrax(x64):
    # Euler on the augmented ODE: x_N = (I + A h)^N x0 and ℓ_N = N h tr A exactly
    A, n = _matrix(), 50
    flow = ContinuousFlow(LinearField(A, jnp.zeros(3)), 3, solver=diffrax.Euler(), dt0=1 / n)
    x0 = jnp.array([1.0, 0.5, -0.5])
    y, ld, back, _ = _there_and_back(flow, x0)
    np.testing.assert_allclose(y, jnp.linalg.matrix_power(jnp.eye(3) + A / n, n) @ x0, atol=1e-12)
    assert abs(float(ld - jnp.trace(A))) < 1e-12
    # explicit Euler backwards is not an exact inverse
    assert float(jnp.max(jnp.abs(back - x0))) < 0.05


def test_round_trip_and_log_det_against_autodiff_jacobian(x64):
    flow = _mlp_flow(jax.random.key(0), rtol=1e-10, atol=1e-10)
    flow = eqx.tree_at(
        lambda f: f.vector_field.mlp.mlp.layers[-1].weight,
        flow,
        3 * flow.vector_field.mlp.mlp.layers[-1].weight,
    )
    x = jnp.array([0.4, -0.9, 1.3])

    h = 1e-4

    @eqx.filter_jit
    def run(flow, x):
        # x and x ± h e_i in one batch: the Jacobian by central differences
        pts = jnp.concatenate([x[None], x + h * jnp.eye(3), x - h * jnp.eye(3)])
        ys, lds = jax.vmap(flow.transform_and_log_det)(pts)
        jac = (ys[1:4] - ys[4:7]).T / (2 * h)
        back, ld_inv = jax.vmap(flow.inverse_and_log_det)(ys)
        return ys[0], lds[0], back[0], ld_inv[0], jnp.linalg.slogdet(jac)[1]

    y, ld, back, ld_inv, ld_fd = run(flow, x)
    assert float(jnp.max(jnp.abs(y - x))) > 1e-2  # not the identity
    np.testing.assert_allclose(back, x, atol=1e-7)
    assert abs(float(ld + ld_inv)) < 1e-7
    assert abs(float(ld) - float(ld_fd)) < 1e-6


def test_jit_vmap_float32():
    flow = _mlp_flow(jax.random.key(1))
    assert isinstance(flow, AbstractBijection)
    xs = jax.random.normal(jax.random.key(2), (4, 3))

    @eqx.filter_jit
    def run(flow, xs):
        y, ld = jax.vmap(flow.transform_and_log_det)(xs)
        return y, ld, jax.vmap(flow.inverse)(y)

    y, ld, back = run(flow, xs)
    assert y.dtype == jnp.float32 and ld.shape == (4,)
    y0, ld0 = flow.transform_and_log_det(xs[0])  # unbatched, not jitted
    np.testing.assert_allclose(y[0], y0, atol=1e-4)
    np.testing.assert_allclose(ld[0], ld0, atol=1e-4)
    np.testing.assert_allclose(back, xs, atol=1e-3)


def test_hutchinson_estimate_is_unbiased(x64):
    flows = {
        p: _mlp_flow(jax.random.key(3), trace="hutchinson", probe=p, rtol=1e-9, atol=1e-9)
        for p in ("rademacher", "gaussian")
    }
    flows = {
        p: eqx.tree_at(
            lambda f: f.vector_field.mlp.mlp.layers[-1].weight,
            f,
            3 * f.vector_field.mlp.mlp.layers[-1].weight,
        )
        for p, f in flows.items()
    }
    x = jnp.array([0.2, 0.7, -1.1])
    n = 2000

    @eqx.filter_jit
    def run(flows, x):
        out = {}
        for p, flow in flows.items():
            y, exact = flow.inverse_and_log_det(x)
            ys, est = jax.vmap(lambda k, flow=flow: flow.inverse_and_log_det_estimate(x, k))(
                jax.random.split(jax.random.key(4), n)
            )
            out[p] = (y, exact, ys, est)
        return out

    for y, exact, ys, est in run(flows, x).values():
        np.testing.assert_allclose(ys, jnp.broadcast_to(y, ys.shape), atol=1e-6)
        se = float(jnp.std(est) / math.sqrt(n))
        assert float(jnp.std(est)) > 1e-3  # a real estimate, not the exact trace
        assert abs(float(jnp.mean(est)) - float(exact)) < 4 * se


def test_density_integrates_to_one_on_a_grid():
    key = jax.random.key(6)
    field = VectorFieldMLP(key, 2, width=16, depth=2, embed_dim=8)
    last = lambda f: f.mlp.mlp.layers[-1].weight  # noqa: E731
    field = eqx.tree_at(last, field, 4 * last(field))
    flow = Transformed(StandardNormal((2,)), ContinuousFlow(field, 2, rtol=1e-6, atol=1e-6))
    lim, n = 7.0, 120
    h = 2 * lim / n
    c = -lim + h * (jnp.arange(n) + 0.5)
    pts = jnp.stack(jnp.meshgrid(c, c), -1).reshape(-1, 2)
    lp = eqx.filter_jit(lambda f, p: f.log_prob(p))(flow, pts)
    base = StandardNormal((2,)).log_prob(pts)
    assert float(jnp.max(jnp.abs(lp - base))) > 0.05  # the flow moved the density
    assert abs(float(jnp.sum(jnp.exp(lp)) * h * h) - 1) < 2e-3


def test_trajectory_matches_the_solution(x64):
    A = _matrix()
    flow = ContinuousFlow(LinearField(A, jnp.zeros(3)), 3, rtol=1e-10, atol=1e-10)
    x0 = jnp.ones(3)
    ts = jnp.linspace(0, 1, 5)
    path = flow.trajectory(x0, ts)
    assert path.shape == (5, 3)
    exact = jnp.stack([jax.scipy.linalg.expm(A * t) @ x0 for t in ts])
    np.testing.assert_allclose(path, exact, atol=1e-8)


def test_backsolve_adjoint_gradient_matches_checkpointing(x64):
    x = jnp.array([0.3, -0.4, 0.9])

    def loss(A, adjoint):
        flow = ContinuousFlow(
            LinearField(A, jnp.zeros(3)), 3, rtol=1e-10, atol=1e-10, adjoint=adjoint
        )
        y, ld = flow.inverse_and_log_det(x)
        return jnp.sum(y**2) + ld

    A = _matrix()
    g1, g2 = jax.jit(
        lambda A: (
            jax.grad(loss)(A, diffrax.RecursiveCheckpointAdjoint()),
            jax.grad(loss)(A, diffrax.BacksolveAdjoint()),
        )
    )(A)
    np.testing.assert_allclose(g1, g2, atol=1e-6)


def test_errors():
    A = _matrix()
    with pytest.raises(ValueError, match="shape"):
        ContinuousFlow(LinearField(A, jnp.zeros(3)), 2)  # field acts on (3,), flow on (2,)
    flow = ContinuousFlow(LinearField(A, jnp.zeros(3)), 3)
    with pytest.raises(ValueError, match="shape"):
        flow.transform_and_log_det(jnp.ones(4))
    with pytest.raises(ValueError, match="trace"):
        ContinuousFlow(LinearField(A, jnp.zeros(3)), 3, trace="bogus")
    with pytest.raises(ValueError, match="t0"):
        ContinuousFlow(LinearField(A, jnp.zeros(3)), 3, t0=1.0, t1=1.0)
    hutch = ContinuousFlow(LinearField(A, jnp.zeros(3)), 3, trace="hutchinson")
    with pytest.raises(ValueError, match="key"):
        hutch.transform_and_log_det_estimate(jnp.ones(3))
    # too few steps: a clear error, or NaN with throw=False (never a silent wrong value)
    tight = dict(rtol=1e-8, atol=1e-8, max_steps=2)
    with pytest.raises(Exception, match="maximum number of solver steps"):
        ContinuousFlow(LinearField(A, jnp.zeros(3)), 3, **tight).transform_and_log_det(jnp.ones(3))
    y, ld = ContinuousFlow(
        LinearField(A, jnp.zeros(3)), 3, throw=False, **tight
    ).transform_and_log_det(jnp.ones(3))
    assert bool(jnp.all(jnp.isnan(y))) and bool(jnp.isnan(ld))


def test_conditional_flow():
    field = VectorFieldMLP(jax.random.key(0), 2, width=8, depth=1, embed_dim=4, cond_dim=3)
    flow = ContinuousFlow(field, 2, cond_shape=(3,))
    c = jnp.array([1.0, -1.0, 0.5])
    y, ld = flow.transform_and_log_det(jnp.ones(2), c)
    y2, _ = flow.transform_and_log_det(jnp.ones(2), -c)
    assert float(jnp.max(jnp.abs(y - y2))) > 1e-4
    with pytest.raises(ValueError, match="condition"):
        flow.transform_and_log_det(jnp.ones(2))


def test_time_embedding_and_vector_field():
    emb = FourierTimeEmbedding(8)
    e = emb(0.3)
    assert e.shape == (8,)
    np.testing.assert_allclose(e[:4] ** 2 + e[4:] ** 2, 1.0, atol=1e-6)
    rand = FourierTimeEmbedding(8, key=jax.random.key(0))
    assert not np.allclose(rand(0.3), e)
    with pytest.raises(ValueError, match="even"):
        FourierTimeEmbedding(7)
    with pytest.raises(ValueError, match="scalar"):
        emb(jnp.ones(2))
    v = VectorFieldMLP(jax.random.key(1), 3, width=8, depth=2, zero_init_last=True)
    np.testing.assert_array_equal(v(0.5, jnp.ones(3)), 0.0)
    with pytest.raises(ValueError, match="expected \\(3,\\)"):
        v(0.5, jnp.ones((2, 3)))
    # gradients do not move the fixed frequencies
    g = eqx.filter_grad(lambda m: jnp.sum(m(0.5, jnp.ones(3)) ** 2))(
        VectorFieldMLP(jax.random.key(2), 3, width=8, depth=1)
    )
    assert float(jnp.max(jnp.abs(g.embedding.frequencies))) == 0.0


def test_cnf_factory_and_likelihood_objective():
    flow = cnf(jax.random.key(0), 2, width=16, depth=2, embed_dim=8)
    assert flow.bijection.trace == "hutchinson"
    # perturb the zero-initialised output layer so the flow is not the identity
    last = lambda f: f.bijection.vector_field.mlp.mlp.layers[-1].weight  # noqa: E731
    moved = eqx.tree_at(last, flow, 0.5 * jax.random.normal(jax.random.key(9), last(flow).shape))
    x = jax.random.normal(jax.random.key(1), (64, 2))
    objective = CNFMaximumLikelihood()
    n = 200

    @eqx.filter_jit
    def run(flow, moved, x):
        keys = jax.random.split(jax.random.key(3), n)
        losses = jax.vmap(lambda k: objective.loss(moved, k, x[:4], None, 0)[0])(keys)
        return flow.log_prob(x), moved.log_prob(x[:4]), losses

    lp0, lp, losses = run(flow, moved, x)
    # a new flow is the identity: its density is the base density
    np.testing.assert_allclose(lp0, StandardNormal((2,)).log_prob(x), atol=1e-5)
    # the Hutchinson NLL is an unbiased estimate of the exact NLL
    exact = -float(jnp.mean(lp))
    assert float(jnp.std(losses)) > 1e-4
    assert abs(float(jnp.mean(losses)) - exact) < 4 * float(jnp.std(losses)) / math.sqrt(n)
    with pytest.raises(TypeError, match="ContinuousFlow"):
        objective.loss(StandardNormal((2,)), jax.random.key(0), x[:4], None, 0)
    with pytest.raises(ValueError, match="data"):
        objective.loss(flow, jax.random.key(0), None, None, 0)
