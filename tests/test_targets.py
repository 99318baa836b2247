"""Targets: gradients, exact references (vs quadrature and targets.json), symmetries, shapes,
exact samplers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physgen.targets as pt

# Exact values by adaptive quadrature (scipy.integrate.quad, relative tolerance 1e-13), shipped
# with the tests; the reference file in ../shared beside the repository, where it exists,
# must hold the same numbers.
REFERENCES = {
    "double_well": {
        "p_A": 0.9670704549417634, "p_B": 0.03292954505823669,
        "delta_F_B_minus_A_kT": 3.379901071224438, "log_Z": 11.020467230187805,
        "mean_x1": -1.6253597054704436, "var_x1": 0.40691392184551134,
        "minima_x1": [-1.7723034076580755, 1.6887758209615107],
        "barrier_x1": 0.08352758669656443, "barrier_height_from_A_kT": 10.794120778937197,
        "barrier_height_from_B_kT": 7.331024571475905,
    },
    "many_well": {"log_Z_per_pair": 10.293479707073868, "log_Z_dim8": 41.17391882829547,
                  "log_Z_dim32": 164.69567531318188},
}
SHARED_FILE = Path(__file__).resolve().parents[1].parent / "shared/reference/targets.json"


@pytest.fixture(autouse=True)
def _float64():
    """Run every test here in float64 and restore the previous setting afterwards."""
    with jax.enable_x64(True):
        yield


def _all_targets():
    key = jax.random.key(3)
    return {
        "DoubleWell": pt.DoubleWell(),
        "DoubleWell4": pt.DoubleWell(dim=4, a1=-0.3, k=2.0, beta=0.7),
        "ManyWell": pt.ManyWell(dim=8),
        "Gaussian": pt.Gaussian(jnp.array([0.5, -1.0, 2.0]),
                                cov=jnp.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2],
                                               [0.1, -0.2, 0.5]])),
        "GaussianMixture": pt.GaussianMixture(jnp.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 2.0]]),
                                              jnp.array([1.0, 0.5, 0.8]),
                                              jnp.array([0.2, 0.5, 0.3])),
        "fab_gmm40": pt.fab_gmm40(key),
        "MuellerBrown": pt.MuellerBrown(),
    }


TARGET_NAMES = ["DoubleWell", "DoubleWell4", "ManyWell", "Gaussian", "GaussianMixture",
                "fab_gmm40", "MuellerBrown"]


def _scipy_quad_log(f_log, lo, hi, points=()):
    """log ∫ exp(f_log(x)) dx by scipy.integrate.quad, shifted by the max for stability."""
    integrate = pytest.importorskip("scipy.integrate")
    grid = np.linspace(lo, hi, 20001)
    shift = float(np.max(f_log(grid)))
    val, _ = integrate.quad(lambda x: math.exp(f_log(x) - shift), lo, hi, points=points,
                            epsabs=0.0, epsrel=1e-13, limit=500)
    return math.log(val) + shift


# -- gradients, shapes, finiteness --------------------------------------------------------
@pytest.mark.parametrize("name", TARGET_NAMES)
def test_gradient_matches_finite_differences(name):
    target = _all_targets()[name]
    d = target.event_shape[0]
    x = 0.7 * jax.random.normal(jax.random.key(1), (d,), jnp.float64)
    if name == "fab_gmm40":
        x = target.means[0] + 0.5
    grad = jax.jit(jax.grad(target.energy))(x)
    h = 1e-5
    shifts = h * jnp.eye(d, dtype=jnp.float64)
    energies = jax.jit(jax.vmap(target.energy))
    fd = (energies(x + shifts) - energies(x - shifts)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * (1 + float(jnp.max(jnp.abs(fd)))))
    assert grad.dtype == jnp.float64


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_energy_shape_errors_and_vmap(name):
    target = _all_targets()[name]
    d = target.event_shape[0]
    with pytest.raises(ValueError, match=r"expected a single example of shape"):
        target.energy(jnp.zeros((d + 1,)))
    with pytest.raises(ValueError, match=r"batch with jax.vmap"):
        target.energy(jnp.zeros((5, d)))
    xs = jax.random.normal(jax.random.key(0), (5, d))
    e = jax.vmap(target.energy)(xs)
    assert e.shape == (5,) and bool(jnp.all(jnp.isfinite(e)))
    np.testing.assert_allclose(jax.vmap(target.log_density)(xs), -target.beta * e, rtol=1e-12)
    e32 = jax.vmap(target.energy)(xs.astype(jnp.float32))
    assert e32.dtype in (jnp.float32, jnp.float64)


def test_checked_energy_names_target_on_nonfinite():
    dw = pt.DoubleWell()
    f = eqx.filter_jit(pt.checked_energy)
    assert jnp.isfinite(f(dw, jnp.array([0.3, 0.1])))
    with pytest.raises(Exception, match=r"DoubleWell\.energy returned a non-finite value"):
        jax.block_until_ready(f(dw, jnp.array([jnp.nan, 0.0])))
    with pytest.raises(Exception, match=r"ManyWell\.log_density returned a non-finite"):
        jax.block_until_ready(
            eqx.filter_jit(pt.checked_log_density)(pt.ManyWell(4), jnp.array([jnp.inf, 0, 0, 0]))
        )


def test_exact_marker_and_constructor_errors():
    for t in _all_targets().values():
        assert isinstance(t, pt.AbstractExactTarget)
    with pytest.raises(ValueError, match="even"):
        pt.ManyWell(dim=5)
    with pytest.raises(ValueError, match="a4 > 0"):
        pt.DoubleWell(a4=-1.0)
    with pytest.raises(ValueError, match="exactly one"):
        pt.Gaussian(jnp.zeros(2))
    with pytest.raises(ValueError, match="positive definite"):
        pt.Gaussian(jnp.zeros(2), cov=jnp.array([[1.0, 2.0], [2.0, 1.0]]))
    hot = pt.GaussianMixture(jnp.zeros((2, 2)), jnp.ones(2), beta=0.5)
    with pytest.raises(ValueError, match="beta = 1"):
        hot.log_Z()
    with pytest.raises(ValueError, match="beta = 1"):
        hot.sample_exact(jax.random.key(0), 3)


# -- exact references -------------------------------------------------------------------
def test_shipped_references_agree_with_the_shared_file():
    if not SHARED_FILE.exists():  # a checkout without the shared folder: the shipped values
        return
    shared = json.loads(SHARED_FILE.read_text())
    for target, values in REFERENCES.items():
        for name, value in values.items():
            assert shared[target][name] == value, (target, name)


def test_references_match_quadrature_values():
    dw_ref, mw_ref = REFERENCES["double_well"], REFERENCES["many_well"]
    r = pt.DoubleWell().references()
    pairs = [
        (r["log_Z"], dw_ref["log_Z"]), (r["p_A"], dw_ref["p_A"]), (r["p_B"], dw_ref["p_B"]),
        (r["delta_F_B_minus_A"], dw_ref["delta_F_B_minus_A_kT"]),
        (r["mean_x1"], dw_ref["mean_x1"]), (r["var_x1"], dw_ref["var_x1"]),
        (r["minimum_A_x1"], dw_ref["minima_x1"][0]), (r["minimum_B_x1"], dw_ref["minima_x1"][1]),
        (r["barrier_x1"], dw_ref["barrier_x1"]),
        (r["barrier_height_from_A"], dw_ref["barrier_height_from_A_kT"]),
        (r["barrier_height_from_B"], dw_ref["barrier_height_from_B_kT"]),
        (pt.ManyWell(2).log_Z(), mw_ref["log_Z_per_pair"]),
        (pt.ManyWell(8).log_Z(), mw_ref["log_Z_dim8"]),
        (pt.ManyWell(32).log_Z(), mw_ref["log_Z_dim32"]),
    ]
    for ours, theirs in pairs:
        assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("params", [dict(), dict(dim=3, a1=-0.5, k=2.0, beta=0.5),
                                    dict(a2=3.0, a1=0.2, beta=2.5)])
def test_double_well_log_Z_and_moments_vs_scipy(params):
    dw = pt.DoubleWell(**params)
    a4, a2, a1, beta = dw.a4, dw.a2, dw.a1, dw.beta

    def log_f(x):
        return -beta * (a4 * x**4 - a2 * x**2 + a1 * x)

    lz1 = _scipy_quad_log(log_f, -10.0, 10.0, points=(0.0,))
    lz = lz1 + 0.5 * (dw.dim - 1) * math.log(2 * math.pi / (beta * dw.k))
    assert dw.log_Z() == pytest.approx(lz, rel=1e-11)
    integrate = pytest.importorskip("scipy.integrate")
    pa, _ = integrate.quad(lambda x: math.exp(log_f(x) - lz1), -10, 0, epsabs=0, epsrel=1e-13)
    m1, _ = integrate.quad(lambda x: x * math.exp(log_f(x) - lz1), -10, 10, points=(0.0,),
                           epsabs=1e-14, epsrel=1e-13)
    ref = dw.references()
    assert ref["p_A"] == pytest.approx(pa, rel=1e-10)
    assert ref["mean_x1"] == pytest.approx(m1, rel=1e-10)
    assert ref["delta_F_B_minus_A"] == pytest.approx(-math.log((1 - pa) / pa), rel=1e-9)
    # the exact profile is a normalised -log density of x1
    grid = np.linspace(-8, 8, 40001)
    assert np.trapezoid(np.exp(-dw.free_energy_profile(grid)), grid) == pytest.approx(1.0,
                                                                                       rel=1e-9)
    # stationary points: zero gradient
    if "minimum_A_x1" in ref:
        for key in ("minimum_A_x1", "minimum_B_x1", "barrier_x1"):
            x = jnp.zeros(dw.dim).at[0].set(ref[key])
            assert abs(float(jax.grad(dw.energy)(x)[0])) < 1e-9


def test_many_well_log_Z_vs_scipy_and_symmetries():
    lz_x = _scipy_quad_log(lambda x: -(x**4 - 6 * x**2 - 0.5 * x), -10.0, 10.0, points=(0.0,))
    per_pair = lz_x + 0.5 * math.log(2 * math.pi)
    mw = pt.ManyWell(dim=6)
    assert mw.log_Z() == pytest.approx(3 * per_pair, rel=1e-12)
    x = jax.random.normal(jax.random.key(5), (6,)) * 2
    swapped = x.reshape(3, 2)[jnp.array([2, 0, 1])].reshape(6)
    assert mw.energy(swapped) == pytest.approx(float(mw.energy(x)), rel=1e-13)
    # E(x) is even in every y but not in x (the -0.5 x tilt)
    assert mw.energy(x.at[1].multiply(-1)) == pytest.approx(float(mw.energy(x)), rel=1e-13)
    # the energy is a sum of per-pair energies (independence)
    pair = pt.ManyWell(dim=2)
    total = sum(float(pair.energy(x[2 * k: 2 * k + 2])) for k in range(3))
    assert float(mw.energy(x)) == pytest.approx(total, rel=1e-13)


def test_many_well_modes():
    mw = pt.ManyWell(dim=8)
    centres = mw.mode_centres()
    assert centres.shape == (16, 8)
    np.testing.assert_array_equal(mw.mode_index(centres), np.arange(16))
    assert jax.vmap(mw.mode_index)(centres).shape == (16,)
    grads = jax.vmap(jax.grad(mw.energy))(centres)
    assert float(jnp.max(jnp.abs(grads))) < 1e-9
    assert mw.mode_signs(centres).shape == (16, 4)
    assert pt.ManyWell(32).references()["n_modes"] == 2.0**16
    with pytest.raises(ValueError, match="modes"):
        pt.ManyWell(dim=64).mode_centres()


def test_gaussian_log_Z_vs_brute_force_quadrature():
    cov = jnp.array([[1.5, 0.6], [0.6, 0.8]])
    mean = jnp.array([0.3, -0.4])
    grid = np.linspace(-9, 9, 1201)
    gx, gy = np.meshgrid(grid, grid, indexing="ij")
    pts = jnp.stack([gx.ravel(), gy.ravel()], -1)
    for target in (pt.Gaussian(mean, cov=cov, beta=1.7),
                   pt.Gaussian(mean, precision=jnp.linalg.inv(cov), beta=1.7)):
        e = np.asarray(jax.vmap(target.energy)(pts)).reshape(gx.shape)
        z = np.trapezoid(np.trapezoid(np.exp(-target.beta * e), grid, axis=1), grid)
        assert target.log_Z() == pytest.approx(math.log(z), rel=1e-10)
        np.testing.assert_allclose(target.covariance(), cov / 1.7, rtol=1e-12)


def test_gaussian_mixture_normalised_by_quadrature():
    gmm = _all_targets()["GaussianMixture"]
    grid = np.linspace(-10, 10, 801)
    gx, gy = np.meshgrid(grid, grid, indexing="ij")
    pts = jnp.stack([gx.ravel(), gy.ravel()], -1)
    p = np.exp(-np.asarray(jax.vmap(gmm.energy)(pts))).reshape(gx.shape)
    z = np.trapezoid(np.trapezoid(p, grid, axis=1), grid)
    assert math.log(z) == pytest.approx(gmm.log_Z(), abs=1e-10)
    mx = np.trapezoid(np.trapezoid(p * gx, grid, axis=1), grid)
    assert float(gmm.mean()[0]) == pytest.approx(mx, rel=1e-9)
    fab = pt.fab_gmm40(jax.random.key(0))
    assert fab.means.shape == (40, 2) and float(jnp.max(jnp.abs(fab.means))) <= 40.0
    assert int(fab.component_index(fab.means[7])) == 7


def test_mueller_brown_log_Z_vs_trapezoid():
    for mb in (pt.MuellerBrown(), pt.MuellerBrown(beta=0.5, scale=1.0)):
        x0, x1, y0, y1 = -4.5, 4.0, -3.5, 5.0
        gx_, gy_ = np.linspace(x0, x1, 851), np.linspace(y0, y1, 851)
        gx, gy = np.meshgrid(gx_, gy_, indexing="ij")
        pts = jnp.stack([gx.ravel(), gy.ravel()], -1)
        logf = -mb.beta * np.asarray(jax.jit(jax.vmap(mb.energy))(pts)).reshape(gx.shape)
        shift = logf.max()
        z = np.trapezoid(np.trapezoid(np.exp(logf - shift), gy_, axis=1), gx_)
        assert mb.log_Z() == pytest.approx(math.log(z) + shift, rel=1e-9)
    # the three minima are stationary points
    mb = pt.MuellerBrown()
    for m in ([-0.558, 1.442], [0.623, 0.028], [-0.050, 0.467]):
        assert float(jnp.max(jnp.abs(jax.grad(mb.energy)(jnp.array(m))))) < 0.15


# -- exact samplers ---------------------------------------------------------------------
def _z(sample_mean, exact, sample_var, n):
    return abs(sample_mean - exact) / math.sqrt(sample_var / n)


def test_double_well_sampler_moments():
    dw = pt.DoubleWell(dim=3, k=2.0)
    n = 200_000
    x = np.asarray(dw.sample_exact(jax.random.key(0), n))
    ref = dw.references()
    assert x.shape == (n, 3)
    assert _z(x[:, 0].mean(), ref["mean_x1"], ref["var_x1"], n) < 4
    in_a = (x[:, 0] < 0).astype(float)
    assert _z(in_a.mean(), ref["p_A"], ref["p_A"] * ref["p_B"], n) < 4
    # variance of x1: var of (x1 - mean)^2 estimated from the sample
    d2 = (x[:, 0] - ref["mean_x1"]) ** 2
    assert _z(d2.mean(), ref["var_x1"], d2.var(), n) < 4
    assert _z(x[:, 1].mean(), 0.0, 0.5, n) < 4
    assert _z((x[:, 2] ** 2).mean(), 0.5, 2 * 0.25, n) < 4
    # a pinned value of the exact profile: the histogram of x1 agrees within counting errors
    counts, edges = np.histogram(x[:, 0], bins=np.linspace(-3, 3, 25))
    exact = np.array([np.trapezoid(np.exp(-dw.free_energy_profile(g)), g)
                      for g in (np.linspace(a, b, 201) for a, b in zip(edges[:-1], edges[1:],
                                                                       strict=True))])
    ok = exact * n > 50
    z = (counts[ok] - n * exact[ok]) / np.sqrt(n * exact[ok])
    assert np.max(np.abs(z)) < 4.5


def test_many_well_sampler_moments():
    mw = pt.ManyWell(dim=8)
    n = 50_000
    x = np.asarray(mw.sample_exact(jax.random.key(1), n))
    ref = mw.references()
    xs = x[:, 0::2].ravel()
    assert _z(xs.mean(), ref["mean_x"], ref["var_x"], xs.size) < 4
    pos = (xs > 0).astype(float)
    p = ref["p_x_positive"]
    assert _z(pos.mean(), p, p * (1 - p), xs.size) < 4
    ys = x[:, 1::2].ravel()
    assert _z((ys**2).mean(), 1.0, 2.0, ys.size) < 4
    # mode frequencies: the all-positive mode has probability p^4
    idx = np.asarray(mw.mode_index(jnp.asarray(x)))
    freq = (idx == 15).mean()
    assert _z(freq, p**4, p**4 * (1 - p**4), n) < 4


def test_gaussian_and_mixture_sampler_moments():
    g = _all_targets()["Gaussian"]
    n = 100_000
    x = np.asarray(g.sample_exact(jax.random.key(2), n))
    cov = np.asarray(g.covariance())
    for i in range(3):
        assert _z(x[:, i].mean(), float(g.mean[i]), cov[i, i], n) < 4
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.03)
    e = np.asarray(jax.vmap(g.energy)(jnp.asarray(x)))
    assert _z(e.mean(), g.references()["mean_energy"], e.var(), n) < 4
    gmm = _all_targets()["GaussianMixture"]
    y = np.asarray(gmm.sample_exact(jax.random.key(3), n))
    cov_m = np.asarray(gmm.covariance())
    for i in range(2):
        assert _z(y[:, i].mean(), float(gmm.mean()[i]), cov_m[i, i], n) < 4


def test_pullback_is_the_change_of_variables(x64):
    """``Pullback(N(m, Σ), u ↦ loc + scale·u)`` is the Gaussian of ``u``, ``N((m - loc)/scale,
    diag(1/scale) Σ diag(1/scale))``, with the target's normaliser: its log-density equals
    that Gaussian's normalised log-density plus ``log Z`` of the target (float64, 1e-10)."""
    import physgen.bijections as pb

    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    cov = a @ a.T + 0.5 * np.eye(3)
    mean, loc, scale = rng.normal(size=3), rng.normal(size=3), np.array([0.01, 1.0, 30.0])
    target = pt.Gaussian(mean, cov)
    pulled = pt.Pullback(target, pb.Affine(loc, scale))
    assert pulled.event_shape == (3,) and pulled.beta == target.beta
    u_cov = cov / np.outer(scale, scale)
    u_mean = (mean - loc) / scale
    u = rng.normal(size=(5, 3)) * np.sqrt(np.diag(u_cov)) + u_mean
    d = u - u_mean
    log_n = (-0.5 * np.einsum("ni,ij,nj->n", d, np.linalg.inv(u_cov), d)
             - 0.5 * np.linalg.slogdet(2 * np.pi * u_cov)[1])
    got = jax.vmap(pulled.log_density)(jnp.asarray(u))
    np.testing.assert_allclose(got, log_n + target.log_Z(), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="maps shape"):
        pt.Pullback(target, pb.Affine(np.zeros(2), 1.0))
    with pytest.raises(TypeError, match="needs a bijection"):
        pt.Pullback(target, "affine")
    with pytest.raises(ValueError, match="unconditional"):
        pt.Pullback(target, pb.MaskedAutoregressive(3, key=jax.random.key(0), width=4,
                                                    depth=1, cond_shape=(1,)))


def test_linlogcut_softens_only_high_energies(x64):
    """``E = x²/2`` (a unit Gaussian) under ``LinLogCut(high=2, maximum=50)``: E below 2,
    ``2 + log(1 + E - 2)`` between, ``2 + log 49`` above 50 and for NaN; the gradient is E's
    below ``high``, ``E'/(1 + E - h)`` between and zero above; continuous at ``high``."""
    import physgen.bijections as pb

    target = pt.Gaussian(np.zeros(1), np.eye(1))
    soft = pt.LinLogCut(target, high=2.0, maximum=50.0)
    assert soft.event_shape == (1,) and soft.beta == target.beta

    def e(x):
        return float(soft.energy(jnp.array([x])))

    assert float(target.energy(jnp.array([3.0]))) == pytest.approx(4.5, rel=1e-12)
    np.testing.assert_allclose([e(1.0), e(3.0), e(20.0)],
                               [0.5, 2 + math.log(3.5), 2 + math.log(49.0)], rtol=1e-12)
    assert abs(e(2.0 - 1e-6) - e(2.0 + 1e-6)) < 1e-5
    g = jax.grad(lambda x: soft.energy(x))
    np.testing.assert_allclose([float(g(jnp.array([v]))[0]) for v in (1.0, 3.0, 20.0)],
                               [1.0, 3.0 / 3.5, 0.0], rtol=1e-12, atol=1e-15)
    nan = pt.LinLogCut(pt.Pullback(target, pb.Affine(np.array([np.nan]), 1.0)), 2.0, 50.0)
    assert float(nan.energy(jnp.zeros(1))) == pytest.approx(2 + math.log(49.0), rel=1e-12)
    with pytest.raises(ValueError, match="maximum > high"):
        pt.LinLogCut(target, high=5.0, maximum=5.0)
