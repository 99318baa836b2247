"""Flow factories: exact densities that agree between sampling and evaluation, and integrate
to one."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import physgen
from physgen.datasets import TwoMoons
from physgen.flows import masked_autoregressive_flow, neural_spline_flow, planar_flow, real_nvp
from physgen.objectives import MaximumLikelihood

FACTORIES = {
    "real_nvp": lambda k, d: real_nvp(k, d, num_layers=3, width=16),
    "nice": lambda k, d: real_nvp(k, d, num_layers=3, width=16, additive=True),
    "nsf": lambda k, d: neural_spline_flow(k, d, num_layers=3, width=16, num_bins=6),
    "maf": lambda k, d: masked_autoregressive_flow(k, d, num_layers=2, width=16),
    "iaf": lambda k, d: masked_autoregressive_flow(k, d, num_layers=2, width=16,
                                                   inverse_autoregressive=True),
    "planar": lambda k, d: planar_flow(k, d, num_layers=4),
}


def _perturb(model, key, scale=0.3):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        x + scale * jax.random.normal(k, x.shape, x.dtype)
        for x, k in zip(leaves, keys, strict=True)
    ]
    return eqx.combine(jax.tree_util.tree_unflatten(tree, leaves), static)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_sample_and_log_prob_agree(name):
    flow = _perturb(FACTORIES[name](jax.random.key(0), 3), jax.random.key(1))
    x, lp = flow.sample_and_log_prob(jax.random.key(2), (64,))
    assert x.shape == (64, 3) and lp.shape == (64,)
    np.testing.assert_allclose(flow.log_prob(x), lp, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["real_nvp", "nsf", "maf"])
def test_new_flow_is_the_identity(name):
    flow = FACTORIES[name](jax.random.key(0), 3)
    x = jax.random.normal(jax.random.key(1), (10, 3))
    np.testing.assert_allclose(flow.log_prob(x), flow.base.log_prob(x), atol=1e-6)


def test_trained_flow_density_integrates_to_one(x64):
    data = TwoMoons().sample(jax.random.key(0), 5000)
    flow = neural_spline_flow(jax.random.key(1), 2, num_layers=4, width=32, num_bins=8)
    flow, _, _ = physgen.fit(jax.random.key(2), flow, MaximumLikelihood(), data=data, steps=300,
                          optimizer=optax.adam(3e-3), batch_size=256, progress=False)
    lim, n = 7.0, 500
    h = 2 * lim / n
    c = -lim + h * (jnp.arange(n) + 0.5)
    g = jnp.stack(jnp.meshgrid(c, c), -1).reshape(-1, 2)
    integral = float(jnp.sum(jnp.exp(eqx.filter_jit(lambda f, x: f.log_prob(x))(flow, g)))) * h * h
    assert abs(integral - 1.0) < 1e-3
    # and the model learned something: its test NLL is far below the identity flow's
    test = TwoMoons().sample(jax.random.key(3), 2000)
    assert -float(jnp.mean(flow.log_prob(test))) < 3.2


def test_factories_refuse_bad_dimensions():
    with pytest.raises(ValueError, match="dim >= 2"):
        real_nvp(jax.random.key(0), 1)
    with pytest.raises(ValueError, match="positive integer"):
        planar_flow(jax.random.key(0), 0)
