"""Samplers: invariance of a correlated Gaussian (MCSE test), exact evaluation counts,
independence Metropolis with the exact proposal, validation errors."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physgen.diagnostics import mean_and_mcse
from physgen.distributions import AbstractDistribution
from physgen.samplers import (
    HMC,
    MALA,
    NUTS,
    FlowIndependenceMetropolis,
    MCMCResult,
    ParallelTempering,
    RandomWalkMetropolis,
    TemperedSMC,
    geometric_ladder,
    run_mcmc,
)
from physgen.targets import AbstractTarget

MEAN = np.array([1.0, -0.5])
COV = np.array([[1.0, 0.8], [0.8, 2.0]])


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


class CorrelatedGaussian(AbstractTarget):
    """``E(x) = ½ (x-μ)ᵀ Σ⁻¹ (x-μ)`` at ``β = 1``."""

    mean: jax.Array
    precision: jax.Array
    event_shape: tuple = eqx.field(static=True)
    beta: float

    def __init__(self, mean=MEAN, cov=COV):
        self.mean = jnp.asarray(mean)
        self.precision = jnp.asarray(np.linalg.inv(cov))
        self.event_shape = (len(mean),)
        self.beta = 1.0

    def energy(self, x):
        r = x - self.mean
        return 0.5 * r @ (self.precision @ r)


class Normal(AbstractDistribution):
    """``N(loc, L Lᵀ)`` with normalised ``log_prob``: a proposal for the flow sampler."""

    loc: jax.Array
    chol: jax.Array
    shape: tuple = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, loc, cov):
        self.loc = jnp.asarray(loc, jnp.float64)
        self.chol = jnp.asarray(np.linalg.cholesky(np.asarray(cov)), jnp.float64)
        self.shape = self.loc.shape
        self.cond_shape = None

    def _log_prob(self, x, condition=None):
        z = jax.scipy.linalg.solve_triangular(self.chol, x - self.loc, lower=True)
        logdet = jnp.sum(jnp.log(jnp.diag(self.chol)))
        return -0.5 * z @ z - logdet - 0.5 * x.size * math.log(2 * math.pi)

    def _sample(self, key, condition=None):
        return self.loc + self.chol @ jax.random.normal(key, self.shape, self.loc.dtype)

    def _sample_and_log_prob(self, key, condition=None):
        x = self._sample(key)
        return x, self._log_prob(x)


SAMPLERS = {
    "hmc": lambda: HMC(0.3, 5),
    "nuts": lambda: NUTS(),
    "mala": lambda: MALA(0.3),
    "rwm": lambda: RandomWalkMetropolis(0.8),
    "flow_imh": lambda: FlowIndependenceMetropolis(Normal([0.5, 0.0], np.diag([4.0, 6.0]))),
    "pt": lambda: ParallelTempering(HMC(0.3, 5, adapt=False), geometric_ladder(4, 0.2)),
    "smc": lambda: TemperedSMC(HMC(0.3, 5, adapt=False), num_mcmc_steps=5),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_gaussian_invariance(name):
    """Mean and covariance within 4 Monte Carlo standard errors (errors from τ_int)."""
    target = CorrelatedGaussian()
    res = run_mcmc(jax.random.key(42), SAMPLERS[name](), target, num_chains=4,
                   num_samples=2000, num_warmup=300)
    x = np.asarray(res.samples)
    assert x.shape == (4, 2000, 2) and x.dtype == np.float64
    assert res.log_density.shape == (4, 2000)
    np.testing.assert_allclose(
        np.asarray(res.log_density), np.asarray(jax.vmap(jax.vmap(target.log_density))(x)),
        rtol=1e-10, atol=1e-10,
    )
    d = x - MEAN
    checks = [(x[..., i], MEAN[i], f"mean[{i}]") for i in range(2)]
    checks += [(d[..., i] * d[..., j], COV[i, j], f"cov[{i},{j}]")
               for i, j in [(0, 0), (0, 1), (1, 1)]]
    for obs, exact, label in checks:
        est, err = mean_and_mcse(obs)
        assert abs(est - exact) < 4 * err, f"{name} {label}: {est} vs {exact} ± {err}"
    assert np.all(np.asarray(res.acceptance_rate) > 0.1)
    if name == "smc":  # the SMC evidence estimate of log Z = log ∫ exp(-E) dx
        log_z = np.log(2 * np.pi) + 0.5 * np.log(np.linalg.det(COV))
        assert res.extras["log_Z"].shape == (4,)
        assert abs(float(np.mean(res.extras["log_Z"])) - log_z) < 0.05


def test_imh_exact_proposal_accepts_everything():
    """With q equal to the normalised target, log α = 0 and every proposal is accepted."""
    sampler = FlowIndependenceMetropolis(Normal(MEAN, COV))
    res = run_mcmc(jax.random.key(0), sampler, CorrelatedGaussian(), num_chains=2,
                   num_samples=200, num_warmup=0)
    np.testing.assert_allclose(np.asarray(res.acceptance_rate), 1.0, rtol=0, atol=1e-12)
    # every recorded sample is a fresh proposal: no repeats
    assert np.all(np.abs(np.diff(np.asarray(res.samples), axis=1)).sum(-1) > 0)


def test_imh_with_a_z2_symmetrized_exact_proposal_accepts_everything_and_tunnels():
    """Target ½[N(μ, σ²) + N(−μ, σ²)] with modes 9σ apart; the proposal Z2Symmetrized(N(μ, σ²))
    is that target exactly, so every move is accepted and about half of them change mode."""
    from physgen.distributions import DiagNormal, Z2Symmetrized
    from physgen.targets import GaussianMixture

    mu, sigma = np.array([2.0, -1.0]), 0.5
    target = GaussianMixture(np.stack([mu, -mu]), [sigma, sigma])
    proposal = Z2Symmetrized(DiagNormal(jnp.asarray(mu), jnp.full(2, sigma)))
    res = run_mcmc(jax.random.key(1), FlowIndependenceMetropolis(proposal), target,
                   num_chains=2, num_samples=400, num_warmup=0)
    np.testing.assert_allclose(np.asarray(res.acceptance_rate), 1.0, rtol=0, atol=1e-5)
    flips = np.mean(np.diff(np.sign(np.asarray(res.samples)[..., 0]), axis=1) != 0)
    assert abs(flips - 0.5) < 4 * math.sqrt(0.25 / (2 * 399))


# ------------------------------------------------------------------ exact counts
_COUNTER = {"energy": 0, "grad": 0}


def _add(kind):
    def cb(x):
        _COUNTER[kind] += int(np.size(x))

    return cb


@jax.custom_jvp
def _counted_energy(x, precision, mean):
    jax.debug.callback(_add("energy"), x[..., 0])
    r = x - mean
    return 0.5 * r @ (precision @ r)


@_counted_energy.defjvp
def _counted_energy_jvp(primals, tangents):
    x, precision, mean = primals
    tx, tp, tm = tangents
    jax.debug.callback(_add("grad"), x[..., 0])
    r = x - mean
    val = 0.5 * r @ (precision @ r)
    return val, (precision @ r) @ (tx - tm) + 0.5 * r @ (tp @ r)


class CountingGaussian(AbstractTarget):
    """The Gaussian whose energy reports each evaluation through ``jax.debug.callback``.

    A plain evaluation counts as ``energy``; one under differentiation (the custom JVP
    rule, used by ``value_and_grad``) counts as ``grad``. Robust under ``vmap``/``scan``:
    the callback reports the number of configurations it was called on.
    """

    mean: jax.Array
    precision: jax.Array
    event_shape: tuple = eqx.field(static=True)
    beta: float

    def __init__(self):
        self.mean = jnp.asarray(MEAN)
        self.precision = jnp.asarray(np.linalg.inv(COV))
        self.event_shape = (2,)
        self.beta = 1.0

    def energy(self, x):
        return _counted_energy(x, self.precision, self.mean)


COUNT_CASES = {
    # name: (sampler factory, num_chains) — NUTS and SMC have data-dependent loops, which
    # under vmap run every chain to the longest; one chain keeps the callback count exact.
    "hmc": (lambda: HMC(0.3, 4), 2),
    "hmc_fixed": (lambda: HMC(0.3, 4, adapt=False), 2),
    "nuts": (lambda: NUTS(0.5), 1),
    "mala": (lambda: MALA(0.3), 2),
    "rwm": (lambda: RandomWalkMetropolis(0.8), 2),
    "flow_imh": (lambda: FlowIndependenceMetropolis(Normal([0.0, 0.0], np.eye(2) * 4)), 2),
    "pt_mala": (lambda: ParallelTempering(MALA(0.3), geometric_ladder(3, 0.3)), 2),
    "smc_hmc": (lambda: TemperedSMC(HMC(0.3, 3, adapt=False), num_mcmc_steps=2), 1),
}


@pytest.mark.parametrize("name", list(COUNT_CASES))
def test_evaluation_counts_are_exact(name):
    factory, chains = COUNT_CASES[name]
    sampler, target = factory(), CountingGaussian()
    _COUNTER.update(energy=0, grad=0)
    res = run_mcmc(jax.random.key(3), sampler, target, num_chains=chains, num_samples=6,
                   num_warmup=25, thinning=2)
    jax.effects_barrier()
    assert res.num_grad_evals == _COUNTER["grad"]
    assert res.num_energy_evals == _COUNTER["energy"] + _COUNTER["grad"]
    assert res.num_energy_evals > 0
    if isinstance(sampler, FlowIndependenceMetropolis):
        # init: log q(x₀); each of the 25 + 6·2 transitions: one sample_and_log_prob
        assert res.num_flow_evals == chains * (1 + 25 + 12)
        assert res.num_energy_evals == chains * (1 + 25 + 12)
    if name == "hmc_fixed":
        assert res.num_grad_evals == chains * (1 + 4 * (25 + 12))
    if name in ("hmc_fixed", "pt_mala", "flow_imh"):
        # continuing from the final state costs no init
        _COUNTER.update(energy=0, grad=0)
        res2 = run_mcmc(jax.random.key(4), sampler, target, num_chains=chains, num_samples=3,
                        num_warmup=0, initial_state=res.final_state)
        jax.effects_barrier()
        assert res2.num_energy_evals == _COUNTER["energy"] + _COUNTER["grad"]
        assert res2.num_grad_evals == _COUNTER["grad"]


@pytest.mark.parametrize("name", ["hmc", "hmc_fixed", "mala", "rwm", "flow_imh", "pt_mala"])
def test_stated_costs_predict_the_counts(name):
    """init + warm-up overhead + transitions × cost per transition, per chain, exactly."""
    factory, chains = COUNT_CASES[name]
    sampler = factory()
    res = run_mcmc(jax.random.key(3), sampler, CorrelatedGaussian(), num_chains=chains,
                   num_samples=6, num_warmup=25, thinning=2)
    per_chain = (sampler.init_evals().energy + sampler.warmup_overhead_evals()
                 + sampler.transition_evals() * (25 + 6 * 2))
    assert res.num_energy_evals == chains * per_chain


def test_variable_costs_are_not_stated():
    assert NUTS(0.5).transition_evals() is None
    assert ParallelTempering(NUTS(0.5), geometric_ladder(3, 0.3)).transition_evals() is None
    assert TemperedSMC(HMC(0.3, 3, adapt=False)).transition_evals() is None


# ------------------------------------------------------------------ results and errors
def test_result_container_and_continuation():
    target = CorrelatedGaussian()
    res = run_mcmc(jax.random.key(1), MALA(0.3), target, num_chains=3, num_samples=10,
                   num_warmup=20, thinning=3)
    assert isinstance(res, MCMCResult)
    assert res.samples.shape == (3, 10, 2)
    assert res.acceptance_rate.shape == (3,)
    assert res.extras["step_size"].shape == (3,)
    assert res.num_energy_evals == res.num_grad_evals == 3 * (1 + 20 + 30)
    res2 = run_mcmc(jax.random.key(2), MALA(0.3), target, num_chains=3, num_samples=5,
                    num_warmup=0, initial_state=res.final_state)
    # the adapted step size is carried in the state
    np.testing.assert_array_equal(res2.extras["step_size"], res.extras["step_size"])


def test_wrong_initial_shape_raises():
    with pytest.raises(ValueError, match=r"\(3, 3\).*\(3, 2\)"):
        run_mcmc(jax.random.key(0), HMC(0.1, 3), CorrelatedGaussian(), num_chains=3,
                 num_samples=5, initial_position=jnp.zeros((3, 3)))


class Walled(AbstractTarget):
    event_shape: tuple = eqx.field(static=True)
    beta: float

    def __init__(self):
        self.event_shape = (2,)
        self.beta = 1.0

    def energy(self, x):
        return jnp.where(x[0] > 1.0, jnp.inf, 0.5 * jnp.sum(x**2))


def test_non_finite_initial_log_density_raises():
    x0 = jnp.array([[0.0, 0.0], [2.0, 0.0]])
    with pytest.raises(ValueError, match=r"not finite for chains \[1\]"):
        run_mcmc(jax.random.key(0), RandomWalkMetropolis(0.5), Walled(), num_chains=2,
                 num_samples=5, initial_position=x0)


def test_constructor_validation():
    with pytest.raises(ValueError):
        NUTS(step_size=None, adapt=False)
    with pytest.raises(ValueError):
        ParallelTempering(HMC(0.1, 3), [0.5, 0.9])
    with pytest.raises(ValueError):
        TemperedSMC(NUTS())
    with pytest.raises(ValueError, match="flow has shape"):
        run_mcmc(jax.random.key(0), FlowIndependenceMetropolis(Normal([0.0], [[1.0]])),
                 CorrelatedGaussian(), num_chains=1, num_samples=2,
                 initial_position=jnp.zeros((1, 2)))
