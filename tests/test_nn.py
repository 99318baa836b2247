"""Conditioner networks: shapes, zero-initialised outputs, MADE's autoregressive masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physgen.nn import MLP, MaskedMLP


def test_mlp_shapes_and_zero_init():
    key = jax.random.key(0)
    net = MLP(3, 5, width=8, depth=2, key=key)
    x = jnp.arange(3.0)
    assert net(x).shape == (5,)
    assert not np.allclose(net(x), 0)
    zero = MLP(3, 5, width=8, depth=2, key=key, zero_init_last=True)
    np.testing.assert_array_equal(zero(x), 0.0)
    # hidden layers are untouched: only the last layer starts at zero
    np.testing.assert_array_equal(zero.mlp.layers[0].weight, net.mlp.layers[0].weight)
    assert jax.vmap(net)(jnp.ones((4, 3))).shape == (4, 5)


def test_mlp_errors():
    net = MLP(3, 2, width=4, depth=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"\(4,\).*\(3,\)"):
        net(jnp.ones(4))
    with pytest.raises(ValueError, match="width"):
        MLP(3, 2, width=0, depth=1, key=jax.random.key(0))


def _jacobian(net, n_in):
    x = jnp.asarray(np.random.default_rng(1).standard_normal(n_in), jnp.float32)
    return jax.jit(jax.jacobian(net))(x)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_made_is_autoregressive(depth):
    dim, n_cond, n_params = 4, 2, 3
    in_deg = np.concatenate([np.arange(1, dim + 1), np.zeros(n_cond, int)])
    out_deg = np.tile(np.arange(1, dim + 1), n_params)
    net = MaskedMLP(in_deg, out_deg, width=10, depth=depth, key=jax.random.key(0),
                    activation=jnp.tanh)
    jac = np.asarray(_jacobian(net, dim + n_cond))  # (n_params * dim, dim + n_cond)
    allowed = out_deg[:, None] > in_deg[None, :]
    assert np.all(jac[~allowed] == 0)
    # every allowed connection is used (the masks are not over-restrictive)
    assert np.all(jac[allowed] != 0)


def test_made_masks_are_not_trainable_and_zero_init():
    net = MaskedMLP(np.arange(1, 4), np.arange(1, 4), width=6, depth=1,
                    key=jax.random.key(0), zero_init_last=True)
    assert all(m.dtype == jnp.bool_ for m in net.masks)
    np.testing.assert_array_equal(net(jnp.ones(3)), 0.0)
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        net(jnp.ones(2))


def test_made_bad_degrees():
    with pytest.raises(ValueError, match="in_degrees"):
        MaskedMLP(np.array([0.5, 1.0]), np.arange(2), 4, 1, key=jax.random.key(0))
