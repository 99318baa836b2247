"""Every concrete bijection, by one registry: round trip, log-det vs autodiff Jacobian,
jit/vmap agreement, float32 and float64, shape errors; plus layer-specific checks."""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import physgen.bijections as pb

DIM = 3
COND = (2,)
B = 2.0  # spline interval: test points (1.5 N(0, 1)) fall inside and outside [-B, B]
_MASK_2D = np.array([[True, False], [False, True]])


AFFINE = pb.AffineTransformer()
SPLINE = pb.SplineTransformer(4, B)


def mlp_coupling(k, transformer=AFFINE, shape=DIM, z2=False, partition=None, **kw):
    """Coupling of a flat partition (default: half split) with a small MLP conditioner."""
    partition = pb.FlatPartition(shape) if partition is None else partition
    conditioner = pb.MLPConditioner(partition, transformer, key=k, width=8, depth=1, **kw)
    if z2:
        conditioner = pb.Z2EquivariantConditioner(conditioner, transformer)
    return pb.Coupling(partition, transformer, conditioner)


def conv_coupling(k, transformer=AFFINE, parity=0, z2=False, shape=(2, 2)):
    """Checkerboard coupling with a small periodic conv conditioner."""
    partition = pb.CheckerboardPartition(shape, parity)
    conditioner = pb.ConvConditioner(partition, transformer, key=k, hidden_channels=(3,))
    if z2:
        conditioner = pb.Z2EquivariantConditioner(conditioner, transformer)
    return pb.Coupling(partition, transformer, conditioner)


def _chain(k):
    k1, k2, k3 = jax.random.split(k, 3)
    return pb.Chain([
        mlp_coupling(k1),
        pb.Permute([2, 0, 1]),
        mlp_coupling(k2, SPLINE, cond_shape=COND),
        pb.LULinear(DIM, permutation=[1, 2, 0]),
        pb.MaskedAutoregressive(DIM, key=k3, width=8, depth=1),
    ])


def _scan_spline(k):
    def layer(key):
        return pb.Chain([mlp_coupling(key, SPLINE, cond_shape=COND), pb.Reverse(DIM)])
    return pb.Scan(layer, jax.random.split(k, 3))


def _scan_maf(k):
    def layer(key):
        return pb.Chain([pb.MaskedAutoregressive(DIM, key=key, width=8, depth=1),
                         pb.Permute([1, 2, 0]), pb.ActNorm(DIM)])
    return pb.Scan(layer, jax.random.split(k, 2))


# name -> factory(key) -> bijection. Parameters are perturbed away from the init in tests.
BASE = {
    "affine": lambda k: pb.Affine(jax.random.normal(k, (DIM,)), jnp.array([0.5, 1.0, 2.0])),
    "actnorm": lambda k: pb.ActNorm((DIM,)),
    "permute": lambda k: pb.Permute([2, 0, 1]),
    "reverse": lambda k: pb.Reverse((DIM,)),
    "reverse_2d": lambda k: pb.Reverse((2, 2)),
    "lu_linear": lambda k: pb.LULinear(DIM, permutation=[1, 2, 0]),
    "interval": lambda k: pb.Interval([-1.0, -np.inf, 0.0], [2.0, np.inf, np.pi]),
    # couplings: partition x transformer x conditioner
    "coupling_affine": mlp_coupling,
    "coupling_affine_cond": lambda k: mlp_coupling(k, cond_shape=COND),
    "coupling_additive": lambda k: mlp_coupling(
        k, pb.AffineTransformer(additive=True), partition=pb.FlatPartition(DIM, split=2)),
    "coupling_affine_mask_2d": lambda k: mlp_coupling(
        k, shape=(2, 2), partition=pb.FlatPartition((2, 2), mask=_MASK_2D)),
    "coupling_affine_custom_net": lambda k: mlp_coupling(
        k, partition=pb.FlatPartition(DIM, split=1), net=eqx.nn.MLP(1, 4, 8, 1, key=k)),
    "coupling_affine_z2": lambda k: mlp_coupling(k, z2=True),
    "coupling_additive_z2_cond": lambda k: mlp_coupling(
        k, pb.AffineTransformer(additive=True), z2=True, cond_shape=COND),
    "coupling_spline": lambda k: mlp_coupling(k, pb.SplineTransformer(5, B)),
    "coupling_spline_cond": lambda k: mlp_coupling(k, SPLINE, cond_shape=COND),
    "coupling_circular_spline": lambda k: mlp_coupling(  # test points lie inside (-π, π)
        k, pb.CircularSplineTransformer(4), circular=np.ones(DIM, bool)),
    "coupling_spline_mask_2d": lambda k: mlp_coupling(
        k, SPLINE, shape=(2, 2), partition=pb.FlatPartition((2, 2), mask=_MASK_2D)),
    "checkerboard_affine": conv_coupling,
    "checkerboard_affine_z2": lambda k: conv_coupling(k, parity=1, z2=True),
    "checkerboard_additive_z2": lambda k: conv_coupling(
        k, pb.AffineTransformer(additive=True), z2=True),
    "checkerboard_spline": lambda k: conv_coupling(k, SPLINE),
    "checkerboard_spline_mlp": lambda k: mlp_coupling(
        k, SPLINE, shape=(2, 2), partition=pb.CheckerboardPartition((2, 2), 1)),
    "rq_spline": lambda k: pb.RationalQuadraticSpline((DIM,), num_bins=5, interval=B, key=k),
    "maf": lambda k: pb.MaskedAutoregressive(DIM, key=k, width=8, depth=1),
    "maf_cond": lambda k: pb.MaskedAutoregressive(DIM, key=k, width=8, depth=2,
                                                   cond_shape=COND),
    "maf_spline": lambda k: pb.MaskedAutoregressive(
        DIM, key=k, transformer=SPLINE, width=8, depth=1),
    "planar": lambda k: pb.Planar(DIM, key=k, init_scale=0.5),
    "fourier_scaling": lambda k: pb.FourierScaling((3, 4)),
    "chain_cond": _chain,
    "scan_spline_cond": _scan_spline,
    "scan_maf": _scan_maf,
}
INVERTED = ["coupling_spline", "maf_cond", "planar", "scan_spline_cond"]  # IAF = invert_maf
REGISTRY = dict(BASE)
for _name in INVERTED:
    REGISTRY["invert_" + _name] = (lambda f: lambda k: pb.Invert(f(k)))(BASE[_name])
NAMES = sorted(REGISTRY)


def perturb(tree, seed, scale=0.3):
    """Add ``N(0, scale^2)`` noise to every inexact array leaf (move away from identity).

    The noise comes from NumPy: a ``jax.random`` call per leaf shape would compile a
    threefry kernel per shape, which dominates a test file like this one.
    """
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda a: a + scale * rng.standard_normal(a.shape).astype(a.dtype)
        if eqx.is_inexact_array(a) else a,
        tree,
    )


@functools.cache
def _make_float32(name, seed):
    with jax.enable_x64(False):
        return perturb(REGISTRY[name](jax.random.key(seed)), seed)


def make(name, seed=0):
    """The registry entry ``name`` with perturbed parameters, in the active precision.

    Built (and cached) once in float32, then cast: building again in float64 would redo
    all the eager initialisation work.
    """
    dtype = jnp.result_type(float)
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, _make_float32(name, seed)
    )


def inputs(bij, seed=1, batch=()):
    """Test points ``1.5 N(0, 1)`` (inside and outside the spline interval) and a condition,
    in the active float dtype (NumPy RNG: no per-shape compilation)."""
    rng = np.random.default_rng(seed)
    dtype = jnp.result_type(float)
    x = jnp.asarray(1.5 * rng.standard_normal(batch + tuple(bij.shape)), dtype)
    if bij.cond_shape is None:
        return x, None
    return x, jnp.asarray(rng.standard_normal(batch + tuple(bij.cond_shape)), dtype)


@pytest.fixture(params=["float32", "float64"])
def precision(request):
    """Run the test body in float32 or (scoped, not leaking) float64."""
    if request.param == "float64":
        with jax.enable_x64(True):
            yield jnp.float64, 1e-10
    else:
        yield jnp.float32, 1e-5


# One compiled function per test (and bijection structure): op-by-op dispatch of whole flows
# compiles every primitive separately and is what makes such test files slow.
@eqx.filter_jit
def _round_trip(bij, x, c):
    y, ld = bij.transform_and_log_det(x, c)
    x2, ld_inv = bij.inverse_and_log_det(y, c)
    return y, ld, x2, ld_inv


@eqx.filter_jit
def _round_trip_and_jacobian(bij, x, c):
    def f(v):
        return bij.transform(v.reshape(bij.shape), c).reshape(-1)

    return _round_trip(bij, x, c), jax.jacfwd(f)(x.reshape(-1))


@pytest.mark.parametrize("name", NAMES)
def test_registry(name, precision):
    """For every registered bijection, in float32 and float64:

    - round trip ``x -> y -> x`` to 1e-5 (float32) / 1e-10 (float64), and the inverse
      log-det at ``y`` is minus the forward one;
    - float32: ``jit(vmap(f))`` on a batch agrees with ``jit(f)`` on one example;
    - float64: ``log|det|`` equals ``slogdet`` of the autodiff Jacobian to 1e-10 (one check
      at full precision says more than a loose float32 one; the Jacobian compiles slowly).
    """
    dtype, tol = precision
    bij = make(name)
    x, c = inputs(bij)
    assert x.dtype == dtype
    if dtype == jnp.float64:
        (y, ld, x2, ld_inv), jac = _round_trip_and_jacobian(bij, x, c)
        size = math.prod(bij.shape)
        assert jac.shape == (size, size)
        np.testing.assert_allclose(ld, jnp.linalg.slogdet(jac)[1], rtol=tol, atol=tol)
    else:
        y, ld, x2, ld_inv = _round_trip(bij, x, c)
    if dtype == jnp.float32 and not name.startswith("invert_"):
        # batch of three whose first row is (x, c): vmap must not mix examples
        xs, cs = inputs(bij, seed=3, batch=(3,))
        xs = xs.at[0].set(x)
        cs = None if c is None else cs.at[0].set(c)
        in_axes = (None, 0, None if c is None else 0)
        batched = eqx.filter_jit(jax.vmap(_round_trip, in_axes=in_axes))(bij, xs, cs)
        for single, many in zip((y, ld, x2, ld_inv), batched, strict=True):
            np.testing.assert_allclose(many[0], single, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(batched[2], xs, rtol=tol, atol=tol)
    assert y.shape == bij.shape and y.dtype == dtype and ld.shape == () and ld.dtype == dtype
    assert not np.allclose(y, x), "perturbed bijection should not be the identity"
    np.testing.assert_allclose(x2, x, rtol=tol, atol=tol)
    np.testing.assert_allclose(ld_inv, -ld, rtol=tol, atol=tol)


def _both_directions(bij, x, c):
    return bij.transform_and_log_det(x, c), bij.inverse_and_log_det(x, c)


@pytest.mark.parametrize("name", ["scan_spline_cond", "planar", "invert_maf_cond", "lu_linear"])
def test_plain_call_matches_jit(name):
    """The un-jitted call agrees with the jitted one (a subset: eager dispatch is slow)."""
    bij = make(name)
    x, c = inputs(bij, seed=4)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
        _both_directions(bij, x, c), eqx.filter_jit(_both_directions)(bij, x, c),
    )


@pytest.mark.parametrize("name", NAMES)
def test_wrong_shapes_raise(name):
    bij = make(name)
    x, c = inputs(bij)
    bad = jnp.zeros(tuple(bij.shape) + (2,))
    for method in (bij.transform_and_log_det, bij.inverse_and_log_det):
        with pytest.raises(ValueError, match=r"\(3, 2\)|\(2, 2, 2\)|\(3, 4, 2\)") as info:
            method(bad, c)
        assert str(tuple(bij.shape)) in str(info.value)
        if c is not None:
            with pytest.raises(ValueError, match="condition"):
                method(x, None)
            with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
                method(x, jnp.zeros(3))
    with pytest.raises(ValueError):  # a batch is not a single example: vmap instead
        bij.transform(jnp.zeros((5,) + tuple(bij.shape)), c)


# ----------------------------------------------------------------------------------------
# identity at initialisation

IDENTITY_AT_INIT = ["actnorm", "maf", "maf_cond", "maf_spline", "fourier_scaling"] + [
    name for name in BASE
    if (name.startswith("coupling_") or name.startswith("checkerboard_"))
    and name != "coupling_affine_custom_net"]


@pytest.mark.parametrize("name", IDENTITY_AT_INIT)
def test_identity_at_init(name):
    bij = REGISTRY[name](jax.random.key(0))
    x, c = inputs(bij)
    y, ld = eqx.filter_jit(type(bij).transform_and_log_det)(bij, x, c)
    np.testing.assert_allclose(y, x, atol=1e-6)
    np.testing.assert_allclose(ld, 0.0, atol=1e-6)


@pytest.mark.parametrize("name", [name for name in BASE if "_z2" in name])
def test_z2_equivariant_couplings(name):
    """``f(−x) = −f(x)`` with an equal log-det, both directions (the condition, if any, is
    not negated); a perturbed layer, in float64."""
    with jax.enable_x64(True):
        bij = make(name)
        x, c = inputs(bij)
        (y, ld), (xi, ldi) = eqx.filter_jit(_both_directions)(bij, x, c)
        (y_neg, ld_neg), (xi_neg, ldi_neg) = eqx.filter_jit(_both_directions)(bij, -x, c)
        assert not np.allclose(y, x)
        np.testing.assert_allclose(y_neg, -y, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(xi_neg, -xi, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose([ld_neg, ldi_neg], [ld, ldi], rtol=1e-12, atol=1e-12)
        assert abs(float(ld)) > 1e-3 or "additive" in name


def test_unkeyed_spline_is_identity():
    bij = pb.RationalQuadraticSpline((4,), num_bins=6, interval=1.5)
    x = jnp.array([-3.0, -0.7, 0.2, 1.4])
    y, ld = bij.transform_and_log_det(x)
    np.testing.assert_allclose(y, x, atol=1e-6)
    np.testing.assert_allclose(ld, 0.0, atol=1e-6)


# ----------------------------------------------------------------------------------------
# splines

def _random_knots(seed, k=6, interval=2.0):
    rng = np.random.default_rng(seed)
    raw = [jnp.asarray(rng.standard_normal(n), jnp.result_type(float)) for n in (k, k, k - 1)]
    return pb.spline_knots(*raw, interval)


def test_spline_tails_are_identity():
    kx, ky, kd = _random_knots(0)
    for x in [-10.0, -2.0001, 2.0001, 7.5]:
        y, ld = pb.rational_quadratic_spline(jnp.asarray(x), kx, ky, kd)
        assert y == x and ld == 0
        x2, ld2 = pb.rational_quadratic_spline_inverse(jnp.asarray(x), kx, ky, kd)
        assert x2 == x and ld2 == 0
    # knots pinned at the interval ends, unit derivative there: C^1 across the boundary
    np.testing.assert_allclose([kx[0], kx[-1], ky[0], ky[-1]], [-2, 2, -2, 2], atol=1e-6)
    for x in [-2.0, 2.0]:  # log-derivative 0 at the boundary knots, from inside
        _, ld = pb.rational_quadratic_spline(jnp.asarray(x), kx, ky, kd)
        np.testing.assert_allclose(ld, 0.0, atol=1e-5)


@pytest.mark.parametrize("name", ["scan_spline_cond", "maf_spline", "checkerboard_spline"])
def test_spline_layers_cannot_move_mass_across_their_interval(name):
    """Every spline maps [-B, B] onto itself and is the identity outside, so a flow of spline
    layers (and permutations) keeps, per sample, which coordinates lie beyond ±B: a flow on a
    standard normal base has almost no mass there, whatever it learns. Why
    BoltzmannGenerator.summary checks the support against target draws."""
    bij = make(name)
    x, c = inputs(bij, batch=(2000,))
    x = 2.0 * x  # 3 N(0, 1): many entries beyond B = 2
    y, _ = jax.vmap(bij.transform_and_log_det, in_axes=(0, None if c is None else 0))(x, c)
    outside = lambda a: np.sort(np.abs(np.asarray(a)).reshape(a.shape[0], -1) > B, axis=1)
    np.testing.assert_array_equal(outside(y), outside(x))
    assert not np.allclose(y, x)  # the layers do move points, inside the interval


def test_spline_monotone_and_log_derivative():
    kx, ky, kd = _random_knots(1)
    xs = jnp.linspace(-2.5, 2.5, 501)
    ys, lds = jax.vmap(lambda v: pb.rational_quadratic_spline(v, kx, ky, kd))(xs)
    assert jnp.all(jnp.diff(ys) > 0)
    grads = jax.vmap(jax.grad(lambda v: pb.rational_quadratic_spline(v, kx, ky, kd)[0]))(xs)
    np.testing.assert_allclose(lds, jnp.log(grads), rtol=1e-4, atol=1e-4)


def test_spline_inverse_float64_precision_at_knots_and_edges():
    with jax.enable_x64(True):
        kx, ky, kd = _random_knots(2, k=7)
        xs = jnp.concatenate([kx, kx + 1e-12, kx - 1e-12, jnp.linspace(-3.0, 3.0, 1001)])
        ys = jax.jit(jax.vmap(lambda v: pb.rational_quadratic_spline(v, kx, ky, kd)[0]))(xs)
        back = jax.jit(
            jax.vmap(lambda v: pb.rational_quadratic_spline_inverse(v, kx, ky, kd)[0])
        )(ys)
        assert back.dtype == jnp.float64
        np.testing.assert_allclose(back, xs, rtol=0, atol=1e-12)


def test_spline_min_bin_widths_respected():
    kx, ky, kd = pb.spline_knots(jnp.array([-50.0, 50.0, -50.0]), jnp.zeros(3),
                                 jnp.array([-50.0, 50.0]), 1.0, min_bin_width=0.01,
                                 min_derivative=0.01)
    assert jnp.all(jnp.diff(kx) >= 0.02 - 1e-6)
    assert jnp.all(kd > 0.01 - 1e-7)


# ----------------------------------------------------------------------------------------
# scan

def test_scan_jaxpr_independent_of_depth():
    def build(n):
        def layer(k):
            return pb.Chain([mlp_coupling(k, SPLINE), pb.Reverse(DIM)])
        return pb.Scan(layer, jax.random.split(jax.random.key(0), n))

    x = jnp.ones(DIM)
    counts = []
    for n in (2, 16):
        bij = build(n)
        assert bij.num_layers == n
        for fn in (bij.transform_and_log_det, bij.inverse_and_log_det):
            counts.append(len(jax.make_jaxpr(fn)(x).jaxpr.eqns))
    assert counts[:2] == counts[2:]


def test_scan_equals_chain_of_its_layers():
    with jax.enable_x64(True):  # float64: compare the algebra, not XLA's float32 fusions
        bij = make("scan_spline_cond")
        layers = [jax.tree_util.tree_map(lambda a, i=i: a[i] if eqx.is_array(a) else a,
                                         bij.layers) for i in range(bij.num_layers)]
        chain = pb.Chain(layers)
        x, c = inputs(bij)
        got = eqx.filter_jit(_both_directions)(bij, x, c)
        want = eqx.filter_jit(_both_directions)(chain, x, c)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12), got, want
        )


def test_scan_rejects_bad_keys():
    with pytest.raises(ValueError, match="typed keys"):
        pb.Scan(lambda k: pb.ActNorm(DIM), jnp.zeros((3, 2), jnp.uint32))


# ----------------------------------------------------------------------------------------
# layer-specific behaviour

def test_maf_is_autoregressive_and_inverse_is_parallel():
    bij = make("maf")
    x, _ = inputs(bij)
    jac = jax.jit(jax.jacobian(bij.transform))(x)
    np.testing.assert_allclose(jnp.triu(jac, k=1), 0.0, atol=0)
    # the inverse makes a single MADE pass: no loop in its jaxpr; the forward has one
    inv = jax.make_jaxpr(bij.inverse)(x)
    fwd = jax.make_jaxpr(bij.transform)(x)
    prims = lambda jp: {e.primitive.name for e in jp.jaxpr.eqns}
    assert not prims(inv) & {"while", "scan"}
    assert prims(fwd) & {"while", "scan"}


def test_condition_changes_output():
    for name in ("coupling_affine_cond", "coupling_spline_cond", "coupling_additive_z2_cond",
                 "maf_cond", "chain_cond"):
        bij = make(name)
        x, c = inputs(bij)
        fwd = eqx.filter_jit(type(bij).transform)
        assert not np.allclose(fwd(bij, x, c), fwd(bij, x, c + 1.0))


def test_affine_scale_parameterisation_and_validation():
    bij = pb.Affine(1.0, jnp.array([0.5, 2.0]))
    np.testing.assert_allclose(bij.scale, [0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(bij.raw_scale, pb.inv_positive(jnp.array([0.5, 2.0])))
    for bad in (0.0, -1.0, jnp.array([1.0, jnp.nan])):
        with pytest.raises(ValueError, match="scale must be finite and > 0"):
            pb.Affine(0.0, bad)


def test_interval_maps_onto_its_bounds_and_leaves_free_entries():
    """``Interval``: the image lies in ``(low, high)`` for any real input, also where float64
    saturates the logistic only far out; free entries pass unchanged; ``σ(0)`` is the
    midpoint; a value outside the bounds has no preimage (NaN); bad bounds are refused."""
    with jax.enable_x64(True):
        bij = pb.Interval([-np.pi, -np.inf], [0.0, np.inf])
        x = jnp.array([[0.0, 3.0], [-30.0, -4.0], [30.0, 7.0]])
        y, ld = jax.vmap(bij.transform_and_log_det)(x)
        np.testing.assert_allclose(y[:, 1], x[:, 1], rtol=0, atol=0)
        np.testing.assert_allclose(y[0, 0], -np.pi / 2, rtol=1e-15)
        assert np.all((y[:, 0] > -np.pi) & (y[:, 0] < 0))
        np.testing.assert_allclose(ld[0], np.log(np.pi / 4), rtol=1e-14)
        np.testing.assert_allclose(ld[1], np.log(np.pi) - 30 - 2 * np.log1p(np.exp(-30.0)),
                                   rtol=1e-14)
        x_out, ld_out = bij.inverse_and_log_det(jnp.array([0.5, 1.0]))
        assert np.isnan(x_out[0]) and np.isnan(ld_out)
    for low, high, match in (([0.0], [-1.0], "low < high"), ([0.0], [np.inf], "both bounds"),
                             ([np.nan], [1.0], "both bounds")):
        with pytest.raises(ValueError, match=match):
            pb.Interval(low, high)


def test_constraints_round_trip():
    with jax.enable_x64(True):
        v = jnp.array([1e-8, 1e-3, 0.5, 1.0, 30.0, 700.0])
        np.testing.assert_allclose(pb.positive(pb.inv_positive(v)), v, rtol=1e-12)
    np.testing.assert_allclose(pb.unit_positive(jnp.zeros(3), 1e-3), 1.0, rtol=1e-6)
    assert jnp.all(pb.unit_positive(jnp.array([-1e4, 0.0, 1e4]), 0.1) >= 0.1)
    np.testing.assert_allclose(pb.bin_fractions(jnp.zeros(4)), 0.25, rtol=1e-6)


def test_actnorm_init_standardises_data():
    data = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (500, DIM))
    bij = pb.actnorm_init(pb.ActNorm(DIM), data)
    out = jax.vmap(bij.transform)(data)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(0), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(500, 2\)"):
        pb.actnorm_init(pb.ActNorm(DIM), data[:, :2])
    with pytest.raises(TypeError):
        pb.actnorm_init(pb.Affine(jnp.zeros(DIM)), data)


def test_lu_linear_matrix_and_identity_init():
    bij = pb.LULinear(DIM)
    np.testing.assert_allclose(bij.matrix, jnp.eye(DIM), atol=1e-6)
    bij = make("lu_linear")
    x, _ = inputs(bij)
    np.testing.assert_allclose(bij.transform(x), bij.matrix @ x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bij.transform_and_log_det(x)[1],
                               jnp.linalg.slogdet(bij.matrix)[1], rtol=1e-5, atol=1e-5)


def test_planar_invertibility_constraint_with_adversarial_params():
    with jax.enable_x64(True):
        bij = pb.Planar(DIM, key=jax.random.key(0))
        w = jnp.array([3.0, -1.0, 0.5])
        bij = eqx.tree_at(lambda b: (b.w, b.u, b.b), bij, (w, -0.7 * w, jnp.asarray(0.3)))
        assert -1 < bij.w @ bij._u_hat() < -0.99  # nearly non-invertible
        xs = jax.random.normal(jax.random.key(1), (50, DIM)) * 3
        ys = jax.jit(jax.vmap(bij.transform))(xs)
        np.testing.assert_allclose(jax.jit(jax.vmap(bij.inverse))(ys), xs, atol=1e-10)


def test_constructor_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="not a permutation"):
        pb.Permute([0, 0, 1])
    with pytest.raises(ValueError, match="permutation"):
        pb.LULinear(3, permutation=[0, 1])
    with pytest.raises(ValueError, match=r"mask must be a bool array of shape \(3,\)"):
        pb.FlatPartition(3, mask=np.array([True, False]))
    with pytest.raises(ValueError, match="no entry to transform"):
        pb.FlatPartition(2, mask=np.array([True, True]))
    with pytest.raises(ValueError, match="give either mask or split"):
        pb.FlatPartition(2, mask=np.array([True, False]), split=1)
    with pytest.raises(ValueError, match=r"split must be an int in \[0, 3\)"):
        pb.FlatPartition(3, split=3)
    with pytest.raises(ValueError, match=r"net maps \(1,\) to \(3,\), expected \(4,\)"):
        mlp_coupling(key, partition=pb.FlatPartition(3, split=1),
                     net=eqx.nn.MLP(1, 3, 4, 1, key=key))
    with pytest.raises(ValueError, match="nothing to condition on"):
        mlp_coupling(key, shape=1, partition=pb.FlatPartition(1))
    with pytest.raises(ValueError, match="num_bins"):
        pb.SplineTransformer(0)
    with pytest.raises(ValueError, match="min_scale"):
        pb.AffineTransformer(min_scale=1.0)
    # a conditioner built for another transformer or partition
    partition = pb.FlatPartition(3)
    with pytest.raises(ValueError, match=r"conditioner maps \(1,\) to \(2, 2\), expected "
                       r"\(11, 2\)"):
        pb.Coupling(partition, SPLINE, pb.MLPConditioner(partition, AFFINE, key=key))
    with pytest.raises(ValueError, match=r"2-D field views.*\(1,\)"):
        pb.ConvConditioner(partition, AFFINE, key=key)
    with pytest.raises(ValueError, match="SplineTransformer has no Z2-equivariant"):
        pb.Z2EquivariantConditioner(pb.MLPConditioner(partition, SPLINE, key=key), SPLINE)
    with pytest.raises(TypeError, match="transformer must be an AbstractTransformer"):
        pb.Coupling(partition, "affine", pb.MLPConditioner(partition, AFFINE, key=key))
    with pytest.raises(ValueError, match="interval"):
        pb.RationalQuadraticSpline(3, interval=-1.0)
    with pytest.raises(TypeError, match="transformer"):
        pb.MaskedAutoregressive(3, key=key, transformer="spline")
    with pytest.raises(ValueError, match="share one shape"):
        pb.Chain([pb.Reverse(3), pb.Reverse(4)])
    with pytest.raises(ValueError, match="cond_shape"):
        pb.Chain([mlp_coupling(key, cond_shape=(1,)), mlp_coupling(key, cond_shape=(2,))])
    with pytest.raises(TypeError):
        pb.Invert(jnp.zeros(3))
    with pytest.raises(TypeError, match="shape"):
        pb.Reverse("abc")


@settings(max_examples=6, deadline=None, derandomize=True)
@given(shape=st.sampled_from([(2,), (3,), (5,), (2, 3), (3, 2, 2)]), data=st.data())
def test_any_mask_coupling_round_trips_with_the_autodiff_log_det(shape, data):
    """Property test over event shapes, masks (any split into conditioning and transformed
    entries) and transformers: the round trip is exact and log|det| equals ``slogdet`` of
    the autodiff Jacobian (float64, 1e-10), away from the identity (perturbed weights)."""
    size = math.prod(shape)
    flags = data.draw(st.lists(st.booleans(), min_size=size, max_size=size)
                      .filter(lambda m: any(m) and not all(m)), label="mask")
    transformer = data.draw(st.sampled_from([AFFINE, SPLINE]), label="transformer")
    mask = np.array(flags).reshape(shape)
    with jax.enable_x64(True):
        bij = perturb(mlp_coupling(jax.random.key(0), transformer, shape=shape,
                                   partition=pb.FlatPartition(shape, mask=mask)), 1)
        x, c = inputs(bij)
        (y, ld, x2, ld_inv), jac = _round_trip_and_jacobian(bij, x, c)
    np.testing.assert_allclose(x2, x, atol=1e-10)
    np.testing.assert_allclose(ld_inv, -ld, atol=1e-10)
    np.testing.assert_allclose(ld, np.linalg.slogdet(np.asarray(jac))[1], atol=1e-10)
    np.testing.assert_array_equal(np.asarray(y)[mask], np.asarray(x)[mask])  # x_c unchanged
