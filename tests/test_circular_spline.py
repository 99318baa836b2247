"""Circular rational-quadratic splines in the one Coupling (a diffeomorphism of the circle),
periodic in value and derivative, exact log-derivatives; a coupling periodic in every angle
it reads or maps; the base distribution uniform on the angles."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physgen.bijections as pb

TWO_PI = 2 * np.pi


def _circular_distance(a, b):
    return np.abs(np.asarray(pb.wrap_angle(jnp.asarray(a) - jnp.asarray(b))))


def _params(transformer, n, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(scale * rng.standard_normal((transformer.num_params, n)))


@pytest.mark.parametrize("shift", [True, False])
def test_periodic_in_value_and_derivative(x64, shift):
    """``τ(x + 2πk) = τ(x)`` with equal log-derivatives; across ``±π`` the value (on the
    circle) and the log-derivative are continuous; without the shift ``±π`` is fixed."""
    tr = pb.CircularSplineTransformer(5, shift=shift)
    n = 64
    params = _params(tr, n)
    x = jnp.linspace(-np.pi, np.pi, n, endpoint=False) + 0.01
    y, ld = tr.forward(x, params)
    for k in (-2, 1, 3):
        yk, ldk = tr.forward(x + k * TWO_PI, params)
        assert _circular_distance(yk, y).max() < 1e-11
        np.testing.assert_allclose(ldk, ld, rtol=1e-9, atol=1e-9)
    eps = 1e-8
    ends = jnp.array([np.pi - eps, -np.pi + eps])
    p2 = jnp.repeat(params[:, :1], 2, axis=1)
    (y_hi, y_lo), (ld_hi, ld_lo) = tr.forward(ends, p2)
    assert _circular_distance(y_hi, y_lo) < 1e-6  # 2ε times a bounded derivative
    assert abs(float(ld_hi - ld_lo)) < 1e-5
    if not shift:
        y_pi, _ = tr.forward(jnp.array([-np.pi]), params[:, :1])
        np.testing.assert_allclose(y_pi, -np.pi, atol=1e-14)
    # outputs in [-π, π), a bijection of the circle: sorted inputs give cyclically sorted
    # outputs (one descent at most, where the output wraps)
    assert float(y.min()) >= -np.pi and float(y.max()) < np.pi
    one = jnp.repeat(params[:, :1], n, axis=1)
    y1, _ = tr.forward(x, one)
    assert int(jnp.sum(jnp.diff(y1) < 0)) <= 1


def test_log_derivative_is_exact_and_inverse_round_trips(x64):
    tr = pb.CircularSplineTransformer(6)
    n = 200
    params = _params(tr, n, seed=1)
    x = jnp.asarray(np.random.default_rng(2).uniform(-np.pi, np.pi, n))

    def tau(v, p):
        return tr.forward(v[None], p[:, None])[0][0]

    dy = jax.vmap(jax.grad(tau), in_axes=(0, 1))(x, params)
    y, ld = tr.forward(x, params)
    np.testing.assert_allclose(ld, jnp.log(dy), rtol=1e-10, atol=1e-10)
    x2, ld_inv = tr.inverse(y, params)
    assert _circular_distance(x2, x).max() < 1e-10
    np.testing.assert_allclose(ld_inv, -ld, rtol=1e-10, atol=1e-10)
    # the inverse is periodic too
    x3, ld3 = tr.inverse(y + 4 * np.pi, params)
    assert _circular_distance(x3, x).max() < 1e-10
    np.testing.assert_allclose(ld3, ld_inv, rtol=1e-9, atol=1e-9)


def test_zero_parameters_are_the_identity():
    tr = pb.CircularSplineTransformer(4)
    x = jnp.array([-3.0, -1.0, 0.0, 2.5, 3.1])
    y, ld = tr.forward(x, jnp.zeros((tr.num_params, 5)))
    np.testing.assert_allclose(y, x, atol=1e-6)
    np.testing.assert_allclose(ld, 0.0, atol=1e-6)
    assert tr.num_params == 13 and pb.CircularSplineTransformer(4, shift=False).num_params == 12


def _coupling(key, mask_angles, dim=5):
    tr = pb.CircularSplineTransformer(4)
    partition = pb.FlatPartition(dim, split=2)
    cond = pb.MLPConditioner(partition, tr, key=key, width=16, depth=1,
                             circular=mask_angles)
    layer = pb.Coupling(partition, tr, cond)
    rng = np.random.default_rng(0)
    return jax.tree_util.tree_map(  # away from the identity
        lambda a: a + 0.5 * rng.standard_normal(a.shape) if eqx.is_inexact_array(a) else a,
        layer)


def test_coupling_is_periodic_in_every_angle_with_exact_log_det(x64):
    """A coupling whose conditioner reads one angle and one non-angle and whose transformer
    maps three angles: the log-det equals autodiff's, it round-trips, and shifting any angle
    by 2π changes neither the output (mod 2π) nor the log-det."""
    mask = np.array([True, False, True, True, True])
    layer = _coupling(jax.random.key(0), mask)
    x = jnp.array([2.9, 0.7, -3.0, 0.4, 3.1])

    @jax.jit
    def run(v):
        y, ld = layer.transform_and_log_det(v)
        return y, ld, layer.inverse_and_log_det(y), jax.jacfwd(layer.transform)(v)

    y, ld, (x2, ld_inv), jac = run(x)
    np.testing.assert_allclose(ld, jnp.linalg.slogdet(jac)[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(x2, x, atol=1e-10)
    np.testing.assert_allclose(ld_inv, -ld, rtol=1e-10)
    assert abs(float(ld)) > 1e-2
    for i in np.flatnonzero(mask):
        shifted = x.at[i].add(TWO_PI * (-1) ** i)
        y_s, ld_s, _, _ = run(shifted)
        assert _circular_distance(y_s[mask], y[mask]).max() < 1e-10, i
        np.testing.assert_allclose(y_s[~mask], y[~mask], atol=1e-12)
        np.testing.assert_allclose(ld_s, ld, rtol=1e-9, atol=1e-9)
    # the non-angle entry is read as a number, not periodically
    y_b, _, _, _ = run(x.at[1].add(TWO_PI))
    assert _circular_distance(y_b[2:], y[2:]).max() > 1e-3


def test_circular_mask_is_checked():
    tr = pb.CircularSplineTransformer(4)
    partition = pb.FlatPartition(4)
    with pytest.raises(ValueError, match=r"circular must be a bool mask of shape \(4,\)"):
        pb.MLPConditioner(partition, tr, key=jax.random.key(0), circular=np.ones(3, bool))
    with pytest.raises(ValueError, match="num_bins"):
        pb.CircularSplineTransformer(0)


def test_normal_with_angles_base(x64):
    """Normal on the real entries, uniform on the circle on the angles: integrates to one,
    periodic in the angles, samples in [-π, π), ``sample_and_log_prob`` = ``log_prob``."""
    from physgen.distributions import NormalWithAngles

    base = NormalWithAngles((2,), np.array([False, True]))
    u = np.linspace(-8, 8, 161)
    a = np.linspace(-np.pi, np.pi, 21)
    grid = jnp.asarray(np.stack(np.meshgrid(u, a, indexing="ij"), axis=-1))
    p = np.exp(np.asarray(base.log_prob(grid)))
    total = np.trapezoid(np.trapezoid(p, a, axis=1), u)
    np.testing.assert_allclose(total, 1.0, rtol=1e-8)
    x = jnp.array([[0.3, 1.0], [0.3, 1.0 + TWO_PI]])
    lp = base.log_prob(x)
    np.testing.assert_allclose(lp[0], lp[1])
    s, lp_s = base.sample_and_log_prob(jax.random.key(0), (500,))
    assert float(s[:, 1].min()) >= -np.pi and float(s[:, 1].max()) < np.pi
    np.testing.assert_allclose(lp_s, base.log_prob(s), rtol=1e-12)
    assert abs(float(jnp.mean(s[:, 0]))) < 0.2 and abs(float(jnp.std(s[:, 0])) - 1) < 0.1
    with pytest.raises(ValueError, match=r"angles must be a bool mask of shape \(2,\)"):
        NormalWithAngles((2,), np.array([True]))
