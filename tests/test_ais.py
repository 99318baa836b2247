"""Annealed importance sampling: unbiased Z, exact evaluation counts, input errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physgen.samplers import (
    HMC,
    MALA,
    RandomWalkMetropolis,
    ais_betas,
    annealed_importance_sampling,
)

MU, SIGMA, LOG_Z = 2.0, 0.7, 1.3  # f₁ = Z·N(MU·1, SIGMA² I)


def _f0(x):
    return -0.5 * jnp.sum(x**2) - 0.5 * x.size * math.log(2 * math.pi)


def _f1(x):
    d = x.size
    return (
        LOG_Z
        - 0.5 * jnp.sum(((x - MU) / SIGMA) ** 2)
        - d * math.log(SIGMA)
        - 0.5 * d * math.log(2 * math.pi)
    )


def _exact_transition(key, x, b):
    """Exact draw from π_b ∝ N(0,1)^{1-b} N(MU, SIGMA²)^b (a Gaussian), ignoring x."""
    prec = (1 - b) + b / SIGMA**2
    mean = (b * MU / SIGMA**2) / prec
    return mean + jax.random.normal(key, x.shape, x.dtype) / jnp.sqrt(prec)


def _run(key, n, d, transition, **kw):
    @jax.jit
    def run(key):
        k0, k1 = jax.random.split(key)
        x0 = jax.random.normal(k0, (n, d))
        return annealed_importance_sampling(
            k1, _f0, _f1, x0, num_intermediate=4, transition=transition, **kw
        )

    return run(key)


def _z_scores(log_w_runs, log_z):
    """Per run: (mean w - Z)/se(mean w); log_w_runs (S, N)."""
    w = np.exp(np.asarray(log_w_runs, np.float64) - log_z)  # w/Z per chain
    n = w.shape[1]
    return (w.mean(1) - 1.0) / (w.std(1, ddof=1) / math.sqrt(n))


def test_exact_transitions_give_unbiased_Z(x64):
    """E[w] = Z: z-scores of the per-seed means over 40 seeds are standard normal."""
    d, d_log_z = 2, LOG_Z
    keys = jax.random.split(jax.random.key(0), 40)
    log_w = _run(keys[0], 500 * 40, d, _exact_transition).log_w.reshape(40, 500)
    z = _z_scores(log_w, d_log_z)
    assert abs(z.mean()) < 4 / math.sqrt(len(z)), z
    assert 0.6 < z.std() < 1.5, z.std()
    # pooled log Z with the package's error estimate
    res = _run(jax.random.key(1), 20000, d, _exact_transition)
    err = float(res.log_Z.value) - d_log_z
    assert abs(err) < 4 * float(res.log_Z.stderr) + 1e-3, (err, res.log_Z.stderr)
    assert res.num_energy_evals == 20000 * 5  # K = 5 weight evaluations, exact moves free


def test_biased_transition_is_detected(x64):
    """A kernel that does not leave π_b invariant (it samples f₁ at every b) is biased."""
    wrong = lambda k, x, b: _exact_transition(k, x, 1.0)
    res = _run(jax.random.key(2), 20000, 2, wrong)
    assert abs(float(res.log_Z.value) - LOG_Z) > 8 * float(res.log_Z.stderr)


def test_hmc_transitions_unbiased_without_adaptation(x64):
    d = 2
    res = _run(
        jax.random.key(3),
        4000,
        d,
        HMC(0.4, 3),
        adapt=False,
        num_mcmc_steps=2,
    )
    err = float(res.log_Z.value) - LOG_Z
    assert abs(err) < 4 * float(res.log_Z.stderr) + 1e-3, (err, res.log_Z.stderr)
    assert np.all(res.acceptance > 0.2)


def test_adaptation_moves_acceptance_towards_target(x64):
    res = _run(jax.random.key(4), 500, 4, HMC(2.0, 3))
    # too large a step: the step size shrinks and the acceptance rises towards 0.65
    assert res.step_size[-1] < 0.75 * res.step_size[0]
    assert res.acceptance[0] < 0.4 < res.acceptance[-1]
    assert res.adapted_step_size[0] < res.step_size[0]


@pytest.mark.parametrize(
    "transition, cost, grads",
    [(HMC(0.1, 3), 3, True), (MALA(0.1), 1, True), (RandomWalkMetropolis(0.1), 1, False)],
)
def test_energy_evaluation_count_is_exact(transition, cost, grads):
    """The reported counts equal the evaluations actually made (counted by a callback)."""
    calls = []

    def f1(x):
        jax.debug.callback(lambda v: calls.append(np.asarray(v).size // 3), x)
        return _f1(x)

    n, ni, m = 8, 3, 2
    x0 = jax.random.normal(jax.random.key(0), (n, 3))
    res = jax.jit(
        lambda k: annealed_importance_sampling(
            k,
            _f0,
            f1,
            x0,
            num_intermediate=ni,
            transition=transition,
            num_mcmc_steps=m,
        )
    )(jax.random.key(1))
    jax.block_until_ready(res.log_w)
    k = ni + 1
    expected = n * (k + (k - 1) * m * cost)
    assert int(res.num_energy_evals) == expected
    assert sum(calls) == expected
    assert int(res.num_grad_evals) == (n * (k - 1) * (1 + m * cost) if grads else 0)


def test_plain_importance_sampling_and_log_q0():
    x0 = jax.random.normal(jax.random.key(0), (100, 2))
    lq = jax.vmap(_f0)(x0)
    res = jax.jit(lambda k: annealed_importance_sampling(k, _f0, _f1, x0, lq, num_intermediate=0))(
        jax.random.key(1)
    )
    np.testing.assert_allclose(res.log_w, jax.vmap(_f1)(x0) - lq, rtol=1e-5)
    assert int(res.num_energy_evals) == 100 and res.acceptance.shape == (0,)


def test_kernel_object_and_betas():
    x0 = jax.random.normal(jax.random.key(0), (32, 2))
    b = ais_betas(3, "geometric")
    assert b[0] == 0 and b[-1] == 1 and np.all(np.diff(b) > 0)
    res = jax.jit(
        lambda k: annealed_importance_sampling(
            k, _f0, _f1, x0, num_intermediate=3, transition=HMC(0.3, 2), betas=b
        )
    )(jax.random.key(1))
    assert res.samples.shape == (32, 2) and res.step_size.shape == (3,)
    np.testing.assert_array_equal(res.betas, b.astype(res.betas.dtype))
    # the weights are the path's increments: finite, and their log-mean-exp estimates
    # log(Z₁/Z₀) of the test's pair to within a few of its standard errors
    assert np.all(np.isfinite(res.log_w))
    assert abs(float(res.log_Z.value) - LOG_Z) < 5 * float(res.log_Z.stderr) + 0.05


def test_kernel_defaults_come_from_the_kernel():
    """The step size starts at the kernel's own value and adapts towards the kernel's
    optimal acceptance rate (RWM: its scale, towards 0.234)."""
    x0 = jax.random.normal(jax.random.key(0), (200, 2))
    rwm = RandomWalkMetropolis(0.05)
    res = jax.jit(
        lambda k: annealed_importance_sampling(
            k, _f0, _f1, x0, num_intermediate=3, transition=rwm
        )
    )(jax.random.key(1))
    assert float(res.step_size[0]) == pytest.approx(0.05)
    # a tiny random-walk step is accepted too often: the scale grows
    assert res.acceptance[0] > 0.234 and res.adapted_step_size[-1] > res.step_size[0]
    assert int(res.num_grad_evals) == 0


def test_bad_inputs_raise():
    x0 = jnp.zeros((8, 2))
    with pytest.raises(TypeError, match="transition"):
        annealed_importance_sampling(
            jax.random.key(0), _f0, _f1, x0, num_intermediate=2, transition="hmc"
        )
    with pytest.raises(ValueError, match="one scalar scale"):
        annealed_importance_sampling(
            jax.random.key(0), _f0, _f1, x0, num_intermediate=2,
            transition=RandomWalkMetropolis(jnp.array([0.1, 0.2])),
        )
    with pytest.raises(ValueError, match="step_size"):
        annealed_importance_sampling(
            jax.random.key(0), _f0, _f1, x0, num_intermediate=2, step_size=jnp.ones(3)
        )
    with pytest.raises(ValueError, match="betas"):
        annealed_importance_sampling(
            jax.random.key(0), _f0, _f1, x0, num_intermediate=1, betas=[0.0, 0.7, 0.5]
        )
    with pytest.raises(ValueError, match="log_q0"):
        annealed_importance_sampling(
            jax.random.key(0), _f0, _f1, x0, jnp.zeros(7), num_intermediate=1
        )
