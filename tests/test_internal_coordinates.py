"""The Z-matrix bijection: round trips, the log-det against autodiff, the canonical frame,
and agreement with the torsions of the molecule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physgen.bijections as pb
from physgen.observables import torsion_angles
from physgen.targets import ALANINE_DIPEPTIDE_ZMATRIX, PHI_ATOMS, PSI_ATOMS

IC = pb.InternalCoordinates(ALANINE_DIPEPTIDE_ZMATRIX)
N = 22


def _internal(ic, n_samples, seed=0, dtype=np.float64):
    """Random valid internal coordinates: bonds 0.1-0.16 nm, angles 95-125°, any torsion."""
    rng = np.random.default_rng(seed)
    n = ic.n_atoms
    b = rng.uniform(0.1, 0.16, (n_samples, n - 1))
    theta = np.radians(rng.uniform(95, 125, (n_samples, n - 2)))
    phi = rng.uniform(-np.pi, np.pi, (n_samples, n - 3))
    return jnp.asarray(np.concatenate([b, theta, phi], axis=1), dtype)


def _rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)  # proper: det +1


def test_shape_and_layout():
    assert IC.shape == (3 * N - 6,)
    assert (IC.bonds, IC.angles, IC.torsions) == (slice(0, 21), slice(21, 41), slice(41, 60))


def test_round_trips_and_log_det_equal_autodiff(x64):
    """z -> r -> z and r -> z -> r to 1e-10, and both log-dets equal ``slogdet`` of the
    autodiff Jacobian to 1e-10, at several random geometries (float64)."""
    zs = _internal(IC, 4)

    @jax.jit
    def check(z):
        r, ld = IC.transform_and_log_det(z)
        z2, ld_inv = IC.inverse_and_log_det(r)
        jac = jax.jacfwd(IC.transform)(z)
        jac_inv = jax.jacfwd(IC.inverse)(r)
        return r, ld, z2, ld_inv, jnp.linalg.slogdet(jac)[1], jnp.linalg.slogdet(jac_inv)[1]

    for z in zs:
        r, ld, z2, ld_inv, ref, ref_inv = check(z)
        np.testing.assert_allclose(z2, z, atol=1e-10)
        np.testing.assert_allclose(ld, ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ld_inv, ref_inv, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ld_inv, -ld, rtol=1e-12)
        r2 = IC.transform(IC.inverse(r))
        np.testing.assert_allclose(r2, r, atol=1e-10)


def test_float32_and_vmap_agree_with_single_examples():
    zs = _internal(IC, 16, seed=1, dtype=np.float32)
    r, ld = jax.jit(jax.vmap(IC.transform_and_log_det))(zs)
    assert r.dtype == jnp.float32 and r.shape == (16, 3 * N - 6)
    r0, ld0 = jax.jit(IC.transform_and_log_det)(zs[0])
    np.testing.assert_allclose(r[0], r0, atol=1e-6)
    np.testing.assert_allclose(ld[0], ld0, rtol=1e-5)
    z2 = jax.jit(jax.vmap(IC.inverse))(r)
    np.testing.assert_allclose(z2, zs, atol=1e-4)


def test_positions_frame_and_invariance(x64):
    """``from_positions`` removes translation and rotation: equal ``r`` for a moved copy;
    ``to_positions`` then ``from_positions`` is the identity; distances are kept."""
    r = IC.transform(_internal(IC, 1, seed=2)[0])
    x = IC.to_positions(r)
    np.testing.assert_allclose(IC.from_positions(x), r, atol=1e-12)
    moved = x @ jnp.asarray(_rotation(3)).T + jnp.array([0.3, -1.0, 2.0])
    np.testing.assert_allclose(IC.from_positions(moved), r, atol=1e-12)
    d = jnp.linalg.norm(moved[:, None] - moved[None], axis=-1)
    d0 = jnp.linalg.norm(x[:, None] - x[None], axis=-1)
    np.testing.assert_allclose(d, d0, atol=1e-12)
    # the canonical frame: first atom at the origin, second on +x, third in the xy plane
    p = x[IC.atoms]
    np.testing.assert_allclose(p[0], 0.0)
    np.testing.assert_allclose(p[1, 1:], 0.0)
    assert p[1, 0] > 0 and p[2, 1] > 0 and p[2, 2] == 0


def test_torsions_are_the_molecule_torsions(x64):
    """The torsion of the row of atom 14 is φ, that of atom 16 is ψ (as the observables
    measure them); the frame Jacobian completes Σ 2 log b + Σ log sin θ."""
    z = _internal(IC, 1, seed=4)[0]
    x = IC.to_positions(IC.transform(z))
    phi_psi = torsion_angles(x, [PHI_ATOMS, PSI_ATOMS])
    rows = {int(a): i for i, a in enumerate(IC.atoms)}
    torsions = z[IC.torsions]
    np.testing.assert_allclose(phi_psi, [torsions[rows[14] - 3], torsions[rows[16] - 3]],
                               atol=1e-12)
    b, theta = z[IC.bonds], z[IC.angles]
    r, ld = IC.transform_and_log_det(z)
    full = jnp.sum(2 * jnp.log(b)) + jnp.sum(jnp.log(jnp.sin(theta)))
    np.testing.assert_allclose(ld + IC.log_frame_jacobian(r), full, rtol=1e-12)


def test_built_alanine_dipeptide_round_trips(x64):
    pytest.importorskip("openmm")
    from physgen.targets import alanine_dipeptide

    x = jnp.asarray(alanine_dipeptide().positions)
    r = IC.from_positions(x)
    z = IC.inverse(r)
    np.testing.assert_allclose(IC.transform(z), r, atol=1e-10)
    assert float(z[IC.bonds].min()) > 0.09 and float(z[IC.bonds].max()) < 0.16


def test_bad_zmatrices_are_refused():
    good = [[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 0, -1], [3, 2, 1, 0]]
    pb.InternalCoordinates(np.array(good))
    with pytest.raises(ValueError, match="shape"):
        pb.InternalCoordinates(np.array(good)[:, :3])
    with pytest.raises(ValueError, match="every atom"):
        pb.InternalCoordinates(np.array([[0, -1, -1, -1], [0, 0, -1, -1], [2, 1, 0, -1]]))
    with pytest.raises(ValueError, match="earlier rows"):
        pb.InternalCoordinates(np.array([*good[:3], [3, 2, 1, 3]]))
    with pytest.raises(ValueError, match="-1 for the rest"):
        pb.InternalCoordinates(np.array([[0, -1, -1, -1], [1, 0, 2, -1], [2, 1, 0, -1]]))
    with pytest.raises(ValueError, match=r"shape \(60,\)"):
        IC.transform(jnp.zeros(59))


def test_target_in_internal_coordinates(x64):
    """``-E(z) = -U(x(z))/kT + Σ 2 log b + Σ log sin θ`` with the force field."""
    pytest.importorskip("openmm")
    from physgen.targets import ForceField, InternalCoordinateTarget, alanine_dipeptide

    molecule = alanine_dipeptide()
    ff = ForceField(molecule.system)
    target = InternalCoordinateTarget(ff, IC)
    assert target.event_shape == (60,)
    z = jax.jit(lambda x: IC.inverse(IC.from_positions(x)))(jnp.asarray(molecule.positions))
    e, g = jax.jit(jax.value_and_grad(target.energy))(z)
    b, theta = z[IC.bonds], z[IC.angles]
    expected = ff.energy(jnp.asarray(molecule.positions)) - (
        jnp.sum(2 * jnp.log(b)) + jnp.sum(jnp.log(jnp.sin(theta))))
    np.testing.assert_allclose(e, expected, rtol=1e-10)
    assert target.beta == 1.0  # log_density = -energy
    assert bool(jnp.all(jnp.isfinite(g)))
    with pytest.raises(ValueError, match=r"expected \(4, 3\)"):
        InternalCoordinateTarget(ff, pb.InternalCoordinates(np.array(
            [[0, -1, -1, -1], [1, 0, -1, -1], [2, 1, 0, -1], [3, 2, 1, 0]])))
