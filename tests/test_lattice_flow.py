"""Lattice flows: checkerboard couplings with periodic conv conditioners — inverses,
log-dets against dense Jacobians, translation and Z2 equivariance, identity at init."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physgen.bijections import (
    AffineTransformer,
    CheckerboardPartition,
    ConvConditioner,
    Coupling,
    FourierScaling,
    checkerboard,
)
from physgen.distributions import StandardNormal, Transformed, Z2Symmetrized
from physgen.flows._lattice import lattice_flow
from physgen.nn._conv import PeriodicConvNet, periodic_conv
from physgen.targets import FreeField

L = 4


def _perturb(model, seed, scale=0.3):
    """Random non-zero parameters (new flows are the identity); NumPy noise, so that no
    random kernel is compiled per leaf shape."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(
        lambda p: p + jnp.asarray(scale * rng.normal(size=p.shape), p.dtype), params
    )
    return eqx.combine(params, static)


FLOWS = {
    "affine": dict(coupling="affine"),
    "spline": dict(coupling="spline", num_bins=4, interval=3.0),
    "affine_z2": dict(coupling="affine", z2_equivariant=True),
    "affine_z2_fourier": dict(coupling="affine", z2_equivariant=True, fourier=True),
}


SHIFTS = [(0, 0), (1, 1), (2, 0), (0, 2), (3, 1)]


@eqx.filter_jit
def _evaluate(flow, z):
    """Everything the tests check, in one compiled call per flow structure."""
    bij = flow.bijection
    zs = jnp.stack([jnp.roll(z, s, axis=(0, 1)) for s in SHIFTS] + [jnp.roll(z, 1, axis=0), -z])
    ys, lds = jax.vmap(bij.transform_and_log_det)(zs)
    xs, ilds = jax.vmap(bij.inverse_and_log_det)(ys)
    jac = jax.jacfwd(lambda v: bij.transform(v.reshape(L, L)).reshape(-1))(z.reshape(-1))
    x, lp = flow.sample_and_log_prob(jax.random.key(6), (3,))
    return dict(
        zs=zs,
        ys=ys,
        lds=lds,
        xs=xs,
        ilds=ilds,
        lq=flow.log_prob(ys),
        jac_logdet=jnp.linalg.slogdet(jac)[1],
        sample_lp=lp,
        sample_log_prob=flow.log_prob(x),
    )


def _compute() -> dict:
    with jax.enable_x64(True):
        z = jax.random.normal(jax.random.key(2), (L, L), jnp.float64)
        out = {}
        for name in FLOWS:
            flow = lattice_flow(
                jax.random.key(0), L, num_layers=4, hidden_channels=(4,), **FLOWS[name]
            )
            for tag, f in ((name, _perturb(flow, 1)), (name + "_init", flow)):
                for k, v in jax.device_get(_evaluate(f, z)).items():
                    out[f"{tag}/{k}"] = np.asarray(v)
    return out


@pytest.fixture(scope="module")
def results(shared_arrays):
    """Everything the tests check, per flow, computed once per session."""
    flat = shared_arrays("lattice_flow", _compute)
    out: dict = {}
    for key, value in flat.items():
        tag, k = key.split("/", 1)
        out.setdefault(tag, {})[k] = value
    return out


@pytest.mark.parametrize("name", list(FLOWS))
def test_round_trip_and_log_det_against_dense_jacobian(name, results):
    r = results[name]
    np.testing.assert_allclose(r["xs"], r["zs"], atol=1e-10)
    np.testing.assert_allclose(r["ilds"], -r["lds"], atol=1e-10)
    assert float(r["lds"][0]) == pytest.approx(float(r["jac_logdet"]), abs=1e-8)
    assert abs(float(r["lds"][0])) > 1e-3  # the perturbed flow is not volume-preserving
    np.testing.assert_allclose(r["sample_lp"], r["sample_log_prob"], atol=1e-9)


@pytest.mark.parametrize("name", list(FLOWS))
def test_translation_equivariance(name, results):
    r = results[name]
    ys, lds, lq = r["ys"], r["lds"], r["lq"]
    for i, s in enumerate(SHIFTS):
        np.testing.assert_allclose(ys[i], np.roll(ys[0], s, axis=(0, 1)), atol=1e-12)
    n = len(SHIFTS)
    np.testing.assert_allclose(lds[:n], lds[0], atol=1e-12)
    np.testing.assert_allclose(lq[:n], lq[0], atol=1e-10)
    # a shift by one site swaps the checkerboard colours: not a symmetry of the flow
    assert not np.allclose(ys[n], np.roll(ys[0], 1, axis=0), atol=1e-6)


@pytest.mark.parametrize("name", ["affine_z2", "affine_z2_fourier"])
def test_z2_equivariance(name, results):
    r = results[name]
    np.testing.assert_allclose(r["ys"][-1], -r["ys"][0], atol=1e-12)
    assert float(r["lds"][-1]) == pytest.approx(float(r["lds"][0]), abs=1e-12)
    assert float(r["lq"][-1]) == pytest.approx(float(r["lq"][0]), abs=1e-10)
    # the plain affine flow is not Z2-equivariant
    p = results["affine"]
    assert not np.allclose(p["ys"][-1], -p["ys"][0], atol=1e-6)


@pytest.mark.parametrize("name", list(FLOWS))
def test_new_flow_is_identity(name, results):
    r = results[name + "_init"]
    np.testing.assert_allclose(r["ys"], r["zs"], atol=1e-12)
    np.testing.assert_allclose(r["lds"], 0.0, atol=1e-12)


def test_float32_sample_and_log_prob_agree():
    f = _perturb(
        lattice_flow(jax.random.key(0), L, num_layers=2, hidden_channels=(2,)),
        5,
        0.1,
    )
    x, lp = eqx.filter_jit(f.sample_and_log_prob)(jax.random.key(6), (5,))
    assert x.shape == (5, L, L) and x.dtype == jnp.float32
    np.testing.assert_allclose(lp, eqx.filter_jit(f.log_prob)(x), rtol=1e-4, atol=1e-3)


def test_periodic_conv_net_commutes_with_translations():
    net = PeriodicConvNet(1, 3, (5, 5), 3, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (1, 6, 4))
    shifts = [(0, 0), (1, 0), (0, 3), (5, 2)]
    outs = eqx.filter_jit(jax.vmap(net))(jnp.stack([jnp.roll(x, s, axis=(1, 2)) for s in shifts]))
    assert outs.shape == (4, 3, 6, 4)
    for i, shift in enumerate(shifts):
        np.testing.assert_allclose(outs[i], jnp.roll(outs[0], shift, axis=(1, 2)), atol=1e-5)
    odd = PeriodicConvNet(1, 2, (4,), 3, key=jax.random.key(0), activation=jnp.tanh, use_bias=False)
    both = eqx.filter_jit(jax.vmap(odd))(jnp.stack([x, -x]))
    np.testing.assert_allclose(both[1], -both[0], atol=1e-6)
    zero = PeriodicConvNet(1, 2, (4,), 3, key=jax.random.key(0), zero_init_last=True)
    np.testing.assert_array_equal(eqx.filter_jit(zero)(x), 0.0)


@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("bias", [True, False])
def test_periodic_conv_equals_circular_conv2d(x64, kernel, bias):
    """The matrix-product convolution equals eqx's circular-padded Conv2d (the reference)."""
    conv = eqx.nn.Conv2d(3, 4, kernel, padding=kernel // 2, padding_mode="CIRCULAR",
                         use_bias=bias, key=jax.random.key(0))
    conv = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a)
                                  else a, conv)
    x = jax.random.normal(jax.random.key(1), (3, 6, 8), jnp.float64)
    np.testing.assert_allclose(periodic_conv(conv, x), conv(x), rtol=1e-12, atol=1e-12)


def test_checkerboard_mask():
    m = checkerboard((4, 4), 0)
    assert m.sum() == 8 and m[0, 0] and not m[0, 1]
    np.testing.assert_array_equal(checkerboard((4, 4), 1), ~m)


def test_bad_arguments_raise():
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="even"):
        lattice_flow(k, 5)
    with pytest.raises(ValueError, match="num_layers"):
        lattice_flow(k, 4, num_layers=3)
    with pytest.raises(ValueError, match="coupling"):
        lattice_flow(k, 4, coupling="maf")
    with pytest.raises(ValueError, match="SplineTransformer has no Z2-equivariant"):
        lattice_flow(k, 4, coupling="spline", z2_equivariant=True)
    with pytest.raises(ValueError, match="2-D"):
        CheckerboardPartition((16,), 0)
    with pytest.raises(ValueError, match="parity"):
        CheckerboardPartition((4, 4), 2)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        PeriodicConvNet(1, 2, (4,), 2, key=k)
    with pytest.raises(ValueError, match="expected"):
        PeriodicConvNet(1, 2, (4,), 3, key=k)(jnp.zeros((4, 4)))
    partition, affine = CheckerboardPartition((4, 4), 0), AffineTransformer()
    with pytest.raises(ValueError, match=r"maps \(4, 4\) to \(3, 4, 4\), expected \(2, 4, 4\)"):
        Coupling(partition, affine,
                 ConvConditioner(partition, affine, net=PeriodicConvNet(1, 3, (4,), key=k)))
    with pytest.raises(ValueError, match="shape"):
        lattice_flow(k, 4, num_layers=2, hidden_channels=(2,)).log_prob(jnp.zeros((4, 5)))


@pytest.mark.parametrize("beta", [1.0, 0.7])
def test_fourier_scaling_of_a_standard_normal_is_the_exact_free_field(x64, beta):
    """N(0, I) pushed through σ(k) = 1/√(βk(p)) is N(0, (βK)⁻¹): log q = −βS − log Z exactly,
    for the density, the samples' covariance (G(x) by FFT) and under translations."""
    target = FreeField(L, 0.8, beta)
    scale = 1 / np.sqrt(beta * target.eigenvalues())
    flow = Transformed(StandardNormal((L, L)), FourierScaling((L, L), scale))
    np.testing.assert_allclose(flow.bijection.scale, scale, rtol=1e-12)
    phi = jax.random.normal(jax.random.key(0), (5, L, L), jnp.float64)
    exact = -beta * jax.vmap(target.energy)(phi) - target.log_Z()
    np.testing.assert_allclose(flow.log_prob(phi), exact, rtol=1e-12, atol=1e-10)
    x, lq = flow.sample_and_log_prob(jax.random.key(1), (20_000,))
    np.testing.assert_allclose(lq, flow.log_prob(x), rtol=1e-10, atol=1e-10)
    # ⟨|φ̃(p)|²⟩/V = 1/(βk(p)) mode by mode (G(x) is its inverse FFT); each mode's power is
    # exponential or χ²₁-distributed, relative standard error ≤ √(2/N)
    power = np.mean(np.abs(np.fft.fft2(np.asarray(x))) ** 2, 0) / L**2
    exact_power = 1 / (beta * target.eigenvalues())
    np.testing.assert_allclose(power, exact_power, rtol=5 * np.sqrt(2 / 20_000))
    # a wrong spectrum is a different density
    other = Transformed(StandardNormal((L, L)), FourierScaling((L, L), 1.1 * scale))
    assert not np.allclose(other.log_prob(phi), exact, atol=1e-3)


def test_fourier_scaling_refuses_an_asymmetric_or_non_positive_spectrum():
    s = np.ones((L, L))
    s[1, 0] = 2.0  # σ(k) ≠ σ(−k): the map would not be real
    with pytest.raises(ValueError, match="σ\\(k\\) = σ\\(−k\\)"):
        FourierScaling((L, L), s)
    with pytest.raises(ValueError, match="scale"):
        FourierScaling((L, L), -np.ones((L, L)))


def test_z2_symmetrized_lattice_flow_is_invariant_and_exact(x64):
    """½[q₀(φ) + q₀(−φ)] of a generic (not Z2-equivariant) lattice flow: log q is invariant
    under φ → −φ and the checkerboard translations, equals the two-component log-sum-exp, and
    sample_and_log_prob agrees with log_prob."""
    flow = _perturb(lattice_flow(jax.random.key(2), L, num_layers=2, hidden_channels=(3,),
                                 fourier=True), 7)
    flow = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, flow)
    q = Z2Symmetrized(flow)

    @eqx.filter_jit
    def run(q, phi):
        x, lq = q.sample_and_log_prob(jax.random.key(3), (6,))
        images = jnp.stack([phi, -phi, jnp.roll(phi, (1, 1), (0, 1)), -jnp.roll(phi, 2, 0)])
        return x, lq, q.log_prob(x), q.log_prob(images), q.distribution.log_prob(images[:2])

    phi = jax.random.normal(jax.random.key(4), (L, L), jnp.float64)
    x, lq, lq_again, lq_images, lq0 = run(q, phi)
    np.testing.assert_allclose(lq, lq_again, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(lq_images, lq_images[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(lq_images[0], np.logaddexp(*lq0) - np.log(2), atol=1e-12)
    # q₀ itself is not symmetric, so the mixture is not a relabelled q₀
    assert abs(float(lq0[0] - lq0[1])) > 1e-3
