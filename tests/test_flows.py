"""Flow factories: exact densities that agree between sampling and evaluation, and integrate
to one."""

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import physgen
from physgen.boltzmann import spline_intervals
from physgen.datasets import TwoMoons
from physgen.flows import (
    lattice_flow,
    masked_autoregressive_flow,
    neural_spline_flow,
    planar_flow,
    real_nvp,
)
from physgen.objectives import MaximumLikelihood, ReverseKL
from physgen.reweighting import ImportanceWeightWarning
from physgen.targets import Gaussian

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
    log_prob = eqx.filter_jit(lambda f, x: f.log_prob(x))
    integral = float(jnp.sum(jnp.exp(log_prob(flow, g)))) * h * h
    assert abs(integral - 1.0) < 1e-3
    # and the model learned something: its test NLL is far below the identity flow's
    test = TwoMoons().sample(jax.random.key(3), 2000)
    assert -float(jnp.mean(log_prob(flow, test))) < 3.2


def test_factories_refuse_bad_dimensions():
    with pytest.raises(ValueError, match="dim >= 2"):
        real_nvp(jax.random.key(0), 1)
    with pytest.raises(ValueError, match="positive integer"):
        planar_flow(jax.random.key(0), 0)


# ----------------------------------------------------------------------------- spline support
def test_spline_intervals_of_every_factory():
    assert spline_intervals(neural_spline_flow(jax.random.key(0), 3, interval=8.0)) == (8.0,)
    maf = masked_autoregressive_flow(jax.random.key(0), 3, transformer="spline")
    assert spline_intervals(maf) == (4.0,)
    lattice = lattice_flow(jax.random.key(0), 4, coupling="spline", interval=3.0)
    assert spline_intervals(lattice) == (3.0,)
    assert spline_intervals(real_nvp(jax.random.key(0), 3)) == ()


def test_a_spline_flow_that_cuts_the_target_is_flagged_with_its_interval():
    """The case of the issue, in 2-D: a target of width 2 (1.2% beyond 5 per coordinate) and
    a spline flow on [-5, 5], trained by reverse KL. The flow has almost no mass beyond the
    interval and its own weights cannot show it; HMC chains from its samples (the summary's
    default) walk out and the summary warns, naming the interval. With exact target draws
    the missed mass matches the target's mass beyond the sampled weights."""
    t = Gaussian(jnp.zeros(2), cov=jnp.diag(jnp.array([4.0, 1.0])))
    flow = neural_spline_flow(jax.random.key(0), 2, num_layers=4, width=32, interval=5.0)
    flow, _, _ = physgen.fit(jax.random.key(1), flow, ReverseKL(t, 256), steps=300,
                             optimizer=optax.adam(3e-3), progress=False)
    bg = physgen.BoltzmannGenerator(flow, t)
    with pytest.warns(ImportanceWeightWarning, match=r"outside \[-5, 5\].*interval=5"):
        s = bg.summary(jax.random.key(2), 20_000)
    assert s.spline_intervals == (5.0,) and s.num_reference_draws == 16 * 256
    assert float(s.unsampled_mass.value) > 1 / math.sqrt(s.weights.ess)
    exact = bg.summary(jax.random.key(2), 20_000, warn=False,
                       reference=t.sample_exact(jax.random.key(3), 4000))
    # 2.4% of N(0, diag(4, 1)) lies outside the box; the 4000 draws say so within 4 se
    outside = 2 * (1 - 0.9937903)  # 2(1 − Φ(2.5)) for the wide coordinate
    assert abs(exact.outside_interval - outside) < 4 * math.sqrt(outside / 4000)
    assert any("interval=5" in w for w in exact.warnings)
    d = exact.as_dict()
    assert d["pareto_khat"] == s.weights.pareto_khat and d["unsampled_mass"]["value"] > 0


def test_a_flow_that_covers_its_target_passes_the_summary_quietly():
    """An identity spline flow (N(0, I)) for N(0, 1.2² I): heavier target tails (k = 0.31),
    ESS/N ≈ 0.8, but no mass missed: no warning (measured unsampled mass ≤ 0.15% against the
    limit 1/√ESS = 0.8%)."""
    t = Gaussian(jnp.zeros(2), cov=1.44 * jnp.eye(2))
    bg = physgen.BoltzmannGenerator(neural_spline_flow(jax.random.key(0), 2, interval=5.0), t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = bg.summary(jax.random.key(1), 20_000)
    assert s.warnings == () and 0.7 < s.weights.ess_fraction < 0.9
    assert abs(float(s.log_Z.value) - t.log_Z()) < 4 * float(s.log_Z.stderr)
    with pytest.raises(ValueError, match="reference must have shape"):
        bg.summary(jax.random.key(1), 100, reference=jnp.zeros((10, 3)))
    with pytest.raises(ValueError, match="num_chains=16 starts"):
        bg.summary(jax.random.key(1), 8)
