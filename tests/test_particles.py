"""Particle systems: DW-4 and Lennard-Jones energies against an independent implementation,
the zero-centre-of-mass base, the E(n)-equivariant vector field and CNF (equivariance,
invariance of the density, normalisation on the subspace, the exact log-det on the
subspace), the equivariant OT coupling, and the particle metrics."""

from __future__ import annotations

import itertools
import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.stats import special_ortho_group

import physgen
from physgen.distributions import MeanFreeNormal, StandardNormal, Transformed, remove_mean
from physgen.flow_matching import (
    EquivariantFlowMatching,
    FlowMatching,
    align_particles,
    equivariant_ot_coupling,
)
from physgen.flows import cnf, equivariant_cnf
from physgen.metrics import (
    distance_histogram_distance,
    energy_w2,
    interatomic_distances,
    resample_indices,
    sample_w2,
)
from physgen.nn import EGNNVectorField
from physgen.targets import LennardJones, MultiDoubleWell


# ------------------------------------------------------------------ independent references
def _dw_reference(x, a=0.9, b=-4.0, c=0.0, d0=4.0):
    """bgflow's form: the sum over ordered pairs i != j, halved."""
    e = 0.0
    for i in range(len(x)):
        for j in range(len(x)):
            if i != j:
                u = math.dist(x[i], x[j]) - d0
                e += 0.5 * (a * u**4 + b * u**2 + c)
    return e


def _lj_reference(x, eps=1.0, rm=1.0, k=1.0):
    e = 0.0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            r = math.dist(x[i], x[j])
            e += eps * ((rm / r) ** 12 - 2 * (rm / r) ** 6)
    centre = [sum(p[a] for p in x) / len(x) for a in range(len(x[0]))]
    return e + 0.5 * k * sum((p[a] - centre[a]) ** 2 for p in x for a in range(len(p)))


def _random_orthogonal(rng, d, reflect=False):
    r = special_ortho_group.rvs(d, random_state=rng) if d > 1 else np.eye(1)
    if reflect:
        r = r @ np.diag([-1.0] + [1.0] * (d - 1))
    return jnp.asarray(r)


def _group_action(rng, x):
    """A random (permutation, orthogonal map, translation) applied to ``x`` ``(n, d)``."""
    n, d = x.shape
    perm = rng.permutation(n)
    r = _random_orthogonal(rng, d, reflect=bool(rng.integers(2)))
    shift = jnp.asarray(rng.normal(size=(1, d)))
    return x[perm] @ r.T + shift, perm, r, shift


# --------------------------------------------------------------------------- targets
def test_energies_match_an_independent_implementation(x64):
    rng = np.random.default_rng(0)
    dw = MultiDoubleWell()
    lj13, lj55 = LennardJones(13, 3), LennardJones(55, 3)
    for _ in range(5):
        x = rng.normal(scale=2.0, size=(4, 2))
        np.testing.assert_allclose(float(dw.energy(jnp.asarray(x))), _dw_reference(x.tolist()),
                                   rtol=1e-12)
        # LJ-13 at a typical cluster density (spread ~1), LJ-55 spread wider
        for target, scale in ((lj13, 0.9), (lj55, 1.6)):
            y = rng.normal(scale=scale, size=(target.n_particles, 3))
            np.testing.assert_allclose(float(target.energy(jnp.asarray(y))),
                                       _lj_reference(y.tolist()), rtol=1e-10)
    # the parameters are used: a, b, c, d0, epsilon, r_m, oscillator
    x = rng.normal(size=(3, 2))
    other = MultiDoubleWell(3, 2, a=0.5, b=1.0, c=0.3, d0=1.5)
    np.testing.assert_allclose(float(other.energy(jnp.asarray(x))),
                               _dw_reference(x.tolist(), 0.5, 1.0, 0.3, 1.5), rtol=1e-12)
    y = rng.normal(size=(5, 3))
    lj = LennardJones(5, 3, epsilon=2.0, r_m=1.3, oscillator=0.7)
    np.testing.assert_allclose(float(lj.energy(jnp.asarray(y))),
                               _lj_reference(y.tolist(), 2.0, 1.3, 0.7), rtol=1e-10)


def test_energies_are_invariant_and_the_com_restraint_vanishes_on_the_subspace(x64):
    rng = np.random.default_rng(1)
    for target in (MultiDoubleWell(), LennardJones(13, 3)):
        x = jnp.asarray(rng.normal(size=target.event_shape))
        gx, *_ = _group_action(rng, x)
        np.testing.assert_allclose(target.energy(gx), target.energy(x), rtol=1e-11)
        restrained = type(target)(target.n_particles, target.n_dims, com_restraint=2.0)
        xc = remove_mean(x)
        np.testing.assert_allclose(restrained.energy(xc), target.energy(xc), rtol=1e-12)
        shift = jnp.ones(target.n_dims) * 0.3
        expected = 0.5 * 2.0 * target.n_particles * float(jnp.sum(shift**2))
        np.testing.assert_allclose(restrained.energy(xc + shift) - target.energy(xc),
                                   expected, rtol=1e-10)


def test_energy_gradients_match_finite_differences(x64):
    rng = np.random.default_rng(2)
    for target in (MultiDoubleWell(), LennardJones(6, 3)):
        x = jnp.asarray(rng.normal(scale=1.2, size=target.event_shape))
        g = jax.grad(target.energy)(x)
        h = 1e-6
        for idx in [(0, 0), (1, 1), (2, 0)]:
            e = jnp.zeros_like(x).at[idx].set(h)
            fd = (target.energy(x + e) - target.energy(x - e)) / (2 * h)
            np.testing.assert_allclose(g[idx], fd, rtol=1e-6, atol=1e-6)


def test_lennard_jones_coinciding_particles_give_inf_not_nan():
    x = jnp.zeros((3, 3)).at[2, 0].set(1.0)
    assert float(LennardJones(3, 3).energy(x)) == math.inf


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="n_particles"):
        MultiDoubleWell(1, 2)
    with pytest.raises(ValueError, match="a > 0"):
        MultiDoubleWell(a=-1.0)
    with pytest.raises(ValueError, match="single example"):
        LennardJones(13, 3).energy(jnp.zeros((2, 13, 3)))
    with pytest.raises(ValueError, match="n_particles >= 2"):
        MeanFreeNormal((1, 3))


# ------------------------------------------------------------------ zero-COM base
def test_mean_free_normal_lives_on_the_subspace(x64):
    base = MeanFreeNormal((5, 3), scale=1.7)
    assert base.dim == 12
    x, lp = base.sample_and_log_prob(jax.random.key(0), (1000,))
    np.testing.assert_allclose(jnp.sum(x, axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(base.log_prob(x), lp, rtol=1e-13)
    np.testing.assert_allclose(base.log_prob(x + 0.4), lp, rtol=1e-13)  # translation class
    # on the subspace the squared norm is σ² χ² with (n-1)d degrees of freedom
    r2 = jnp.sum(x**2, axis=(1, 2)) / 1.7**2
    assert abs(float(jnp.mean(r2)) - 12) < 4 * math.sqrt(2 * 12 / 1000)
    # the normaliser counts (n-1)d dimensions
    expected = -0.5 * float(jnp.sum(x[0] ** 2)) / 1.7**2 - 12 * math.log(1.7 * math.sqrt(
        2 * math.pi))
    np.testing.assert_allclose(lp[0], expected, rtol=1e-12)


# ------------------------------------------------------------------ EGNN and the CNF
@pytest.mark.parametrize("n,d", [(4, 2), (5, 3)])
def test_egnn_vector_field_is_equivariant(x64, n, d):
    field = EGNNVectorField(jax.random.key(0), n, d, hidden=16, num_layers=3)
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = jnp.asarray(rng.normal(size=(n, d)))
        t = float(rng.uniform())
        v = field(t, x)
        np.testing.assert_allclose(jnp.sum(v, axis=0), 0.0, atol=1e-12)
        gx, perm, r, _ = _group_action(rng, x)
        np.testing.assert_allclose(field(t, gx), v[perm] @ r.T, atol=1e-10, rtol=1e-10)
    assert float(jnp.max(jnp.abs(v))) > 1e-3  # not trivially zero


def test_egnn_jacobian_is_exact_where_particles_coincide(x64):
    """Particles 0 and 1 at one point: each message direction Δ/(|Δ| + 1) has Jacobian I
    at Δ = 0, so the field is differentiable there; autodiff must give the central
    differences (the exact trace of a CNF needs this Jacobian), not sqrt's NaN."""
    n, d = 3, 2
    field = EGNNVectorField(jax.random.key(0), n, d, hidden=16, num_layers=2)
    x = jnp.asarray([[0.3, -0.2], [0.3, -0.2], [-0.6, 0.4]])

    def f(v):
        return field(0.4, v.reshape(n, d)).reshape(-1)

    flat, h = x.reshape(-1), 1e-6
    jac = np.asarray(jax.jit(jax.jacfwd(f))(flat))
    steps = h * jnp.eye(n * d)  # row k: a step along coordinate k
    fd = np.asarray(jax.jit(jax.vmap(lambda s: (f(flat + s) - f(flat - s)) / (2 * h)))(steps)).T
    assert np.all(np.isfinite(jac))
    np.testing.assert_allclose(jac, fd, atol=1e-7)
    assert np.max(np.abs(jac)) > 1e-2  # not trivially zero


def _small_flow(key, n, d, gain=1.0, **kw):
    flow = equivariant_cnf(key, n, d, hidden=16, num_layers=2, embed_dim=8, **kw)
    # gain > 1: larger weights, a more strongly non-Gaussian flow
    return jax.tree_util.tree_map(lambda a: gain * a if eqx.is_inexact_array(a) else a, flow)


def test_cnf_log_density_is_invariant(x64):
    """Fixed steps: every Runge-Kutta stage is equivariant, so the invariance is exact up
    to rounding (an adaptive controller's elementwise error norm is not rotation invariant,
    so the step sequences, and the values within the tolerance, would differ)."""
    flow = _small_flow(jax.random.key(1), 4, 2, gain=2.0, dt0=0.05, solver=diffrax.Tsit5())
    rng = np.random.default_rng(4)
    x = flow.sample(jax.random.key(2), (3,))
    lp = flow.log_prob(x)
    for _ in range(3):
        gx = jnp.stack([_group_action(rng, xi)[0] for xi in x])
        np.testing.assert_allclose(flow.log_prob(gx), lp, atol=1e-8, rtol=0)
    # and it is not a trivial density: it differs from the base's
    assert float(jnp.max(jnp.abs(lp - flow.base.log_prob(x)))) > 0.1


def test_cnf_density_integrates_to_one_on_the_subspace(x64):
    """Two particles on a line: the subspace is x = (a, -a), orthonormal coordinate
    u = √2 a; ∫ q(x(u)) du = 1 by quadrature. With the normaliser of n·d = 2 dimensions the
    integral would be √(2π) too small."""
    flow = _small_flow(jax.random.key(5), 2, 1, rtol=1e-9, atol=1e-9)
    u = jnp.linspace(-10.0, 10.0, 2001)
    a = u / math.sqrt(2.0)
    x = jnp.stack([a, -a], axis=-1)[..., None]
    q = jnp.exp(flow.log_prob(x))
    integral = float(jnp.sum(q) * (u[1] - u[0]))
    assert abs(integral - 1.0) < 1e-5, integral
    # the flow is not the identity: its density differs from the base's
    assert float(jnp.max(jnp.abs(q - jnp.exp(flow.base.log_prob(x))))) > 0.01


def test_cnf_log_det_is_that_of_the_map_on_the_subspace(x64):
    """log q = log p_base(z) - log|det J_⊥| with J_⊥ = Uᵀ (∂f/∂z) U, U an orthonormal basis
    of the zero-COM subspace, the Jacobian taken by autodiff through the ODE solve."""
    n, d = 3, 2
    flow = _small_flow(jax.random.key(6), n, d, rtol=1e-10, atol=1e-10)
    z = flow.base.sample(jax.random.key(7))
    x, lq = flow.sample_and_log_prob(jax.random.key(7))
    np.testing.assert_allclose(x, flow.bijection.transform(z), atol=1e-12)
    # compiled whole: op by op the backward pass through the solve takes twice as long
    jac = jax.jit(jax.jacrev(lambda zz: flow.bijection.transform(zz.reshape(n, d)).reshape(-1)))(
        z.reshape(-1))
    centring = np.kron(np.eye(n) - np.ones((n, n)) / n, np.eye(d))
    basis = np.linalg.svd(centring)[0][:, : (n - 1) * d]
    _, logdet = np.linalg.slogdet(basis.T @ np.asarray(jac) @ basis)
    np.testing.assert_allclose(lq, flow.base.log_prob(z) - logdet, atol=1e-7)
    assert abs(logdet) > 0.05
    np.testing.assert_allclose(jnp.sum(x, axis=0), 0.0, atol=1e-12)


# ------------------------------------------------------------------ equivariant OT
@pytest.mark.parametrize("batch_cost", ["aligned", "radial"])
def test_equivariant_ot_never_increases_the_transport_cost(x64, batch_cost):
    rng = np.random.default_rng(8)
    for n, d, b in [(4, 2, 16), (13, 3, 8), (5, 1, 6)]:
        x0 = remove_mean(jnp.asarray(rng.normal(size=(b, n, d))))
        x1 = remove_mean(jnp.asarray(rng.normal(scale=2.0, size=(b, n, d)) + 1.0))
        plain = float(jnp.sum((x1 - x0) ** 2))
        aligned = align_particles(x0, x1)
        paired0, coupled = equivariant_ot_coupling(x0, x1, batch_cost=batch_cost)
        c_aligned = float(jnp.sum((aligned - x0) ** 2))
        c_coupled = float(jnp.sum((coupled - paired0) ** 2))
        assert c_coupled <= c_aligned + 1e-9 and c_aligned <= plain + 1e-9
        assert c_coupled < 0.9 * plain  # and it does lower it
        np.testing.assert_allclose(paired0, x0, atol=1e-12)
        # every coupled configuration is a member of the orbit of one data point: the
        # same sorted interatomic distances, each data point used once
        dist_in = np.sort(np.asarray(interatomic_distances(x1)), axis=1)
        dist_out = np.sort(np.asarray(interatomic_distances(coupled)), axis=1)
        match = [int(np.argmin(np.abs(dist_in - row).sum(1))) for row in dist_out]
        assert sorted(match) == list(range(b))
        np.testing.assert_allclose(dist_out, dist_in[match], atol=1e-10)


def test_radial_batch_cost_bounds_the_aligned_cost_from_below(x64):
    """The cheap re-pairing cost is a group-invariant lower bound of the aligned one."""
    from physgen._base._alignment import aligned_cost_matrix
    from physgen.flow_matching._equivariant import _radial_cost

    rng = np.random.default_rng(11)
    x0 = np.asarray(remove_mean(jnp.asarray(rng.normal(size=(6, 7, 3)))))
    x1 = np.asarray(remove_mean(jnp.asarray(rng.normal(scale=1.5, size=(5, 7, 3)))))
    radial, aligned = _radial_cost(x0, x1), aligned_cost_matrix(x0, x1)
    assert radial.shape == aligned.shape == (6, 5)
    assert np.all(radial <= aligned + 1e-12) and np.all(radial > 0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = x1[:, rng.permutation(7)] @ q
    np.testing.assert_allclose(_radial_cost(x0, moved), radial, rtol=1e-12)
    with pytest.raises(ValueError, match="batch_cost must be one of"):
        equivariant_ot_coupling(jnp.asarray(x0), jnp.asarray(x0), batch_cost="sorted")


def test_alignment_steps_are_optimal_on_their_own(x64):
    rng = np.random.default_rng(9)
    x0 = remove_mean(jnp.asarray(rng.normal(size=(1, 5, 2))))
    x1 = remove_mean(jnp.asarray(rng.normal(size=(1, 5, 2))))
    permuted = align_particles(x0, x1, rotations=False)[0]
    best = min(float(jnp.sum((x0[0] - x1[0][np.array(p)]) ** 2))
               for p in itertools.permutations(range(5)))
    np.testing.assert_allclose(float(jnp.sum((x0[0] - permuted) ** 2)), best, rtol=1e-12)
    rotated = align_particles(x0, x1, permutations=False)[0]
    angles = np.linspace(0, 2 * np.pi, 20001)
    rots = np.stack([[np.cos(angles), -np.sin(angles)], [np.sin(angles), np.cos(angles)]])
    grid = np.einsum("na,abk->knb", np.asarray(x1[0]), rots)
    best = float(np.min(np.sum((np.asarray(x0[0])[None] - grid) ** 2, axis=(1, 2))))
    got = float(jnp.sum((x0[0] - rotated) ** 2))
    assert got <= best + 1e-9 and got > best - 1e-4


def test_equivariant_flow_matching_trains_and_checks_its_model():
    key = jax.random.key(0)
    data = jnp.asarray(np.random.default_rng(10).normal(size=(256, 4, 2)) * 2.0)
    flow = equivariant_cnf(key, 4, 2, hidden=16, num_layers=2, embed_dim=8)
    obj = EquivariantFlowMatching()
    loss0, aux, _ = obj.loss(flow, key, data[:64], None, jnp.int32(0))
    assert float(aux["transport_cost"]) > 0 and math.isfinite(float(loss0))
    trained, hist, _ = physgen.fit(key, flow, obj, data=data, steps=60,
                                   optimizer=optax.adam(3e-3), batch_size=64, progress=False)
    losses = np.asarray(hist["loss"])
    assert losses[-10:].mean() < losses[:10].mean()
    plain = cnf(key, 8)
    with pytest.raises(TypeError, match="MeanFreeNormal"):
        obj.loss(Transformed(StandardNormal((4, 2)), flow.bijection), key, data[:8], None, 0)
    with pytest.raises(TypeError, match="ContinuousFlow"):
        obj.loss(MeanFreeNormal((4, 2)), key, data[:8], None, 0)
    assert isinstance(FlowMatching().loss(plain, key, data[:8].reshape(8, 8), None, 0)[0],
                      jax.Array)


# ------------------------------------------------------------------ metrics
def test_energy_w2_is_exact_on_empirical_distributions(x64):
    a = jnp.asarray(np.random.default_rng(11).normal(size=500))
    np.testing.assert_allclose(energy_w2(a, a + 0.7), 0.7, rtol=1e-12)
    np.testing.assert_allclose(energy_w2(a, a[::-1]), 0.0, atol=1e-12)
    # unequal sizes: {0, 1} vs {0, 0.5, 1}: quantile functions differ by 0.5 on 1/3 of [0,1]
    np.testing.assert_allclose(energy_w2(jnp.array([0.0, 1.0]), jnp.array([0.0, 0.5, 1.0])),
                               math.sqrt(0.25 / 3), rtol=1e-12)


def test_sample_w2_and_distance_histogram(x64):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(300, 4, 2))
    shift = np.zeros((4, 2))
    shift[0, 0] = 0.5
    assert sample_w2(x, x[rng.permutation(300)]) < 1e-7
    np.testing.assert_allclose(sample_w2(x, x + shift), 0.5, rtol=1e-9)
    assert float(distance_histogram_distance(x, x[::-1])) < 1e-12
    far = float(distance_histogram_distance(x, 3.0 * x, bins=50))
    assert 0.3 < far <= 1.0


def _orthogonal_onto(a, b, angles, reflections=True):
    """min over rotations (and reflections) g of |a - g(b)|² on a grid of angles (2-D)."""
    c, s = np.cos(angles), np.sin(angles)
    rots = np.stack([np.stack([c, -s]), np.stack([s, c])])  # (2, 2, K)
    best = np.inf
    for mirror in (np.eye(2), np.diag([1.0, -1.0]))[: 2 if reflections else 1]:
        moved = np.einsum("na,ab,bck->knc", b, mirror, rots)
        best = min(best, float(np.min(np.sum((a[None] - moved) ** 2, axis=(1, 2)))))
    return best


def test_aligned_sample_w2_follows_its_definition():
    """ASBS's aligned W2, rebuilt by brute force: per pair the permutation minimising the
    summed (unsquared) particle distances, then the best rotation or reflection on a fine
    grid, then the best pairing of the two samples over all 4! pairings."""
    rng = np.random.default_rng(21)
    x = rng.normal(size=(4, 3, 2))
    y = rng.normal(scale=1.3, size=(4, 3, 2)) + 0.7
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    angles = np.linspace(0, 2 * np.pi, 200_001)
    cost = np.empty((4, 4))
    proper = np.empty((4, 4))
    for i, j in itertools.product(range(4), range(4)):
        perm = min(itertools.permutations(range(3)),
                   key=lambda p: np.sum(np.linalg.norm(xc[i] - yc[j][list(p)], axis=1)))
        moved = yc[j][list(perm)]
        cost[i, j] = _orthogonal_onto(xc[i], moved, angles)
        proper[i, j] = _orthogonal_onto(xc[i], moved, angles, reflections=False)
    assert np.any(cost < proper - 1e-3)  # some pairs are closest as mirror images
    best = min(np.mean(cost[np.arange(4), list(p)]) for p in itertools.permutations(range(4)))
    np.testing.assert_allclose(sample_w2(x, y, align=True), np.sqrt(best), rtol=1e-8)
    assert sample_w2(x, y, align=True) < sample_w2(xc, yc)


@pytest.mark.parametrize("n, d", [(4, 2), (13, 3)])
def test_aligned_sample_w2_ignores_relabelled_particles(n, d):
    rng = np.random.default_rng(22)
    x = rng.normal(size=(200, n, d))
    relabelled = np.stack([c[rng.permutation(n)] for c in x])[rng.permutation(200)]
    assert sample_w2(x, relabelled + rng.normal(size=(1, 1, d)), align=True) < 1e-7
    assert sample_w2(x, relabelled) > 1.0
    with pytest.raises(ValueError, match="period .* or align"):
        sample_w2(x, x, period=1.0, align=True)
    with pytest.raises(ValueError, match="configurations"):
        sample_w2(x.reshape(200, -1), x.reshape(200, -1), align=True)


def test_resampling_follows_the_weights(x64):
    log_w = jnp.log(jnp.array([0.1, 0.0, 0.6, 0.3]))
    idx = resample_indices(jax.random.key(0), log_w, 1000)
    counts = np.bincount(np.asarray(idx), minlength=4)
    np.testing.assert_array_equal(counts, [100, 0, 600, 300])  # systematic: exact here
