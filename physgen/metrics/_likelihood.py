"""Test negative log-likelihood (exact models) and its bound (latent-variable models)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import (
    AbstractDensityBound,
    Array,
    Estimate,
    Key,
    check_event_shape,
    require_density,
)


def _estimate(values: Array) -> Estimate:
    values = jnp.asarray(values)
    n = values.shape[0]
    se = jnp.std(values, ddof=1) / math.sqrt(n) if n > 1 else jnp.asarray(jnp.inf)
    return Estimate(jnp.mean(values), se)


def _check_data(x, shape):
    x = jnp.asarray(x)
    check_event_shape(x, shape, "x")
    if x.ndim != len(shape) + 1 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (N, *{tuple(shape)}) with N >= 2, got {x.shape}")
    return x


def test_nll(model, x: Array, *, batch_size: int = 4096) -> Estimate:
    """Test NLL ``−(1/N) Σ_i log q(x_i)`` (nats) with standard error ``std/√N``, for a model
    with exact ``log_prob``; ``x``: ``(N, *shape)``. Its expectation is ``H(p) + KL(p‖q)``."""
    require_density(model, "test_nll")
    x = _check_data(x, model.shape)
    lp = _map_log_prob(model, x, batch_size)
    return _estimate(-lp)


@eqx.filter_jit
def _map_log_prob(model, x, batch_size):
    return jax.lax.map(model.log_prob, x, batch_size=min(batch_size, x.shape[0]))


def test_nll_bound(
    key: Key, model, x: Array, num_samples: int = 1, *, batch_size: int = 1024
) -> Estimate:
    """Upper bound on the test NLL of a latent-variable model: ``−(1/N) Σ_i iwae_K(x_i)``
    (``K = num_samples``; ``K = 1`` is the ELBO), with standard error over the ``N`` test
    points (which includes the Monte Carlo noise of the bound). The bound tightens as ``K``
    grows; its expectation is ``≥`` the true NLL for every ``K``."""
    if not isinstance(model, AbstractDensityBound):
        raise TypeError(
            f"test_nll_bound needs a model with a density bound (an AbstractDensityBound such "
            f"as a VAE), got {type(model).__name__} (exact models: test_nll)"
        )
    x = _check_data(x, model.shape)
    return _estimate(-_map_iwae(key, model, x, num_samples, batch_size))


@eqx.filter_jit
def _map_iwae(key, model, x, num_samples, batch_size):
    keys = jax.random.split(key, x.shape[0])
    return jax.lax.map(
        lambda kx: model.log_prob_bound(kx[0], kx[1], num_samples),
        (keys, x),
        batch_size=min(batch_size, x.shape[0]),
    )


# pytest would collect these names when a test module imports them
test_nll.__test__ = False
test_nll_bound.__test__ = False
