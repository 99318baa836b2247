r"""Internal coordinates (a Z-matrix): bond lengths, angles and torsions of ``N`` atoms.

A Z-matrix lists the atoms in the order they are placed: row ``i`` holds
``(atom, j, k, l)`` and puts ``atom`` at bond length ``b = |atom - j|``, angle
``θ = ∠(atom, j, k)`` and torsion ``φ = φ(atom, j, k, l)`` from atoms of earlier rows
(the first row needs none, the second only ``j``, the third ``j, k``; unused entries are
``-1``).

Translations and rotations do not change internal coordinates, so they describe the
``3N - 6`` dimensional space of shapes. Its Cartesian representative here is the canonical
frame: the atom of row 0 at the origin, that of row 1 on the ``+x`` axis, that of row 2 in
the ``xy`` plane with ``y > 0``. Its free coordinates are the **reduced Cartesian**
coordinates ``r = (x₁, x₂, y₂, x₃, y₃, z₃, …)`` (row order), ``3N - 6`` of them. The
internal coordinates are ``z = (b₁ … b_{N-1}, θ₂ … θ_{N-1}, φ₃ … φ_{N-1})`` (all bonds,
then all angles, then all torsions, each in row order), also ``3N - 6``.

The Jacobian is triangular row by row (each atom is placed from earlier ones: polar
coordinates for row 2, spherical ones about ``j`` for the rest):

.. math::
    \log\left|\det \frac{∂r}{∂z}\right| = \log b_2
        + \sum_{i≥3} \left(2 \log b_i + \log \sin θ_i\right).

The remaining factor ``x₁² y₂ = b₁² b₂ \sin θ₂`` belongs to the frame: Lebesgue measure on
``R^{3N}`` factorises as ``dx = x₁² y₂ · dT · dR · dr`` (``T`` the position of atom 0,
``R`` a rotation with Haar measure of total mass ``8π²``), so a rigid-motion-invariant
density ``exp(-βU(x))`` on ``R^{3N}`` has, on ``r``, the density
``exp(-βU(x(r)) + log(x₁² y₂))`` up to the constant ``V · 8π²``: see
:meth:`InternalCoordinates.log_frame_jacobian`.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, Scalar, Shape, bond_angle, bond_length, torsion
from ._base import AbstractBijection
from ._utils import check_inputs


def _check_zmatrix(zmatrix: ArrayLike) -> np.ndarray:
    z = np.asarray(zmatrix)
    if z.ndim != 2 or z.shape[1] != 4 or z.shape[0] < 3 or not np.issubdtype(z.dtype,
                                                                             np.integer):
        raise ValueError(f"a Z-matrix is an int array of shape (n_atoms >= 3, 4), got "
                         f"{z.shape} ({z.dtype})")
    n = len(z)
    if sorted(z[:, 0].tolist()) != list(range(n)):
        raise ValueError(f"the first column of the Z-matrix must list every atom 0..{n - 1} "
                         "once")
    placed: set[int] = set()
    for row, (atom, *refs) in enumerate(z.tolist()):
        used, unused = refs[: min(row, 3)], refs[min(row, 3):]
        if any(r != -1 for r in unused):
            raise ValueError(f"Z-matrix row {row} (atom {atom}) needs {min(row, 3)} reference "
                             f"atoms and -1 for the rest, got {refs}")
        if len(set(used)) != len(used) or any(r not in placed for r in used):
            raise ValueError(f"Z-matrix row {row} (atom {atom}): the references {used} must be "
                             f"distinct atoms of earlier rows")
        placed.add(atom)
    return z.astype(np.int32)


def _levels(ref_rows: np.ndarray) -> list[np.ndarray]:
    """Rows 3.. grouped so that each group's references lie in earlier groups (or rows 0-2):
    the atoms of one group are placed together."""
    level = np.zeros(len(ref_rows), dtype=int)
    for row in range(3, len(ref_rows)):
        level[row] = 1 + max(level[r] for r in ref_rows[row])
    return [np.flatnonzero(level == v).astype(np.int32) for v in range(1, level.max() + 1)]


def _unit(v: Array) -> Array:
    return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True))


class InternalCoordinates(AbstractBijection):
    r"""Internal coordinates ``z`` -> reduced Cartesian coordinates ``r`` of a Z-matrix (see
    the module docstring for the layouts and the frame), both of shape ``(3N - 6,)``.

    Forward (the generative direction): ``z = (bonds, angles, torsions)`` -> ``r``, with
    ``log|det ∂r/∂z| = log b₂ + Σ_{i≥3} (2 log bᵢ + log sin θᵢ)``. Inverse: ``r`` -> ``z``,
    torsions in ``(-π, π]``. The forward map accepts any torsion (it is ``2π``-periodic in
    each) and needs ``b > 0``, ``0 < θ < π``; ``r`` must have ``x₁ > 0``, ``y₂ > 0``.

    ``zmatrix``: int ``(N, 4)`` rows ``(atom, j, k, l)``, ``-1`` for unused references
    (e.g. ``physgen.targets.ALANINE_DIPEPTIDE_ZMATRIX``). Atoms of one dependency level are
    placed together, so the forward map has as many sequential steps as the Z-matrix is
    deep, not ``N``. Slices of ``z``: :attr:`bonds`, :attr:`angles`, :attr:`torsions`.
    :meth:`to_positions` / :meth:`from_positions` convert ``r`` to and from ``(N, 3)``
    positions. Unconditional.
    """

    # index data is static (hashable tuples), so the maps index with NumPy at trace time
    zmatrix: tuple[tuple[int, int, int, int], ...] = eqx.field(static=True)
    n_atoms: int = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: None = eqx.field(static=True)

    def __init__(self, zmatrix: ArrayLike):
        z = _check_zmatrix(zmatrix)
        self.zmatrix = tuple(tuple(int(v) for v in row) for row in z)
        self.n_atoms = len(z)
        self.shape = (3 * self.n_atoms - 6,)
        self.cond_shape = None

    @property
    def atoms(self) -> np.ndarray:
        """The atom placed by each row, ``(N,)``."""
        return np.array([row[0] for row in self.zmatrix], dtype=np.int32)

    @property
    def ref_rows(self) -> np.ndarray:
        """The rows of the references ``(j, k, l)`` of each row, ``(N, 3)``, -1 if unused."""
        z = np.array(self.zmatrix, dtype=np.int32)
        row_of = np.empty(self.n_atoms, dtype=np.int32)
        row_of[z[:, 0]] = np.arange(self.n_atoms)
        return np.where(z[:, 1:] >= 0, row_of[np.maximum(z[:, 1:], 0)], -1)

    @property
    def bonds(self) -> slice:
        """The bond lengths in ``z`` (rows 1..N-1)."""
        return slice(0, self.n_atoms - 1)

    @property
    def angles(self) -> slice:
        """The bond angles in ``z`` (rows 2..N-1)."""
        return slice(self.n_atoms - 1, 2 * self.n_atoms - 3)

    @property
    def torsions(self) -> slice:
        """The torsions in ``z`` (rows 3..N-1), in ``(-π, π]``."""
        return slice(2 * self.n_atoms - 3, 3 * self.n_atoms - 6)

    def _split(self, z: Array):
        return z[self.bonds], z[self.angles], z[self.torsions]

    def _rows_from_r(self, r: Array) -> Array:
        """Positions ``(N, 3)`` in row order from ``r``."""
        zero = jnp.zeros((), r.dtype)
        first = jnp.zeros((1, 3), r.dtype)
        second = jnp.stack([r[0], zero, zero])[None]
        third = jnp.stack([r[1], r[2], zero])[None]
        return jnp.concatenate([first, second, third, r[3:].reshape(-1, 3)])

    def transform_and_log_det(
        self, x: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        """Internal coordinates ``x = z`` -> reduced Cartesian ``r`` and ``log|det ∂r/∂z|``."""
        z = check_inputs(self, x, condition)
        b, theta, phi = self._split(z)
        ref_rows = self.ref_rows
        zero = jnp.zeros((), z.dtype)
        # rows 0-2: the frame; row 2 in polar coordinates about j, from the direction j -> k
        j, k = ref_rows[2, 0], ref_rows[2, 1]
        x_j, x_k = (jnp.where(v == 1, b[0], zero) for v in (j, k))
        sign = jnp.where(k == 1, 1.0, -1.0).astype(z.dtype)  # j -> k along +x or -x
        blocks = [jnp.zeros((1, 3), z.dtype), jnp.stack([b[0], zero, zero])[None],
                  jnp.stack([x_j + sign * b[1] * jnp.cos(theta[0]),
                             b[1] * jnp.sin(theta[0]), zero])[None]]
        # NeRF, one dependency level at a time: the placed atoms are concatenated (no
        # scatters, whose gradients compile and run slowly), in level order
        placed = 3
        position_of = np.full(self.n_atoms, -1)
        position_of[:3] = np.arange(3)
        p = jnp.concatenate(blocks)
        for rows in _levels(ref_rows):
            j, k, m = (position_of[ref_rows[rows, c]] for c in range(3))
            bi, ti, fi = b[rows - 1, None], theta[rows - 2, None], phi[rows - 3, None]
            u = _unit(p[k] - p[j])
            n = _unit(jnp.cross(p[k] - p[m], u))
            w = jnp.cross(u, n)
            d = jnp.cos(ti) * u - jnp.sin(ti) * (jnp.cos(fi) * w + jnp.sin(fi) * n)
            position_of[rows] = np.arange(placed, placed + len(rows))
            placed += len(rows)
            p = jnp.concatenate([p, p[j] + bi * d])
        p = p[position_of]  # row order
        r = jnp.concatenate([p[1, :1], p[2, :2], p[3:].reshape(-1)])
        return r, self._log_det(b, theta)

    def _log_det(self, b: Array, theta: Array) -> Scalar:
        return jnp.log(b[1]) + jnp.sum(2 * jnp.log(b[2:]) + jnp.log(jnp.sin(theta[1:])))

    def inverse_and_log_det(
        self, y: Array, condition: Array | None = None
    ) -> tuple[Array, Scalar]:
        """Reduced Cartesian ``y = r`` -> internal coordinates ``z`` and ``log|det ∂z/∂r|``."""
        r = check_inputs(self, y, condition, "y")
        p = self._rows_from_r(r)
        j, k, m = (self.ref_rows[:, c] for c in range(3))
        b = bond_length(p[1:], p[j[1:]])
        theta = bond_angle(p[2:], p[j[2:]], p[k[2:]])
        phi = torsion(p[3:], p[j[3:]], p[k[3:]], p[m[3:]])
        return jnp.concatenate([b, theta, phi]), -self._log_det(b, theta)

    def log_frame_jacobian(self, r: Array) -> Scalar:
        r"""``log(x₁² y₂)``: the density on ``r`` of a rigid-motion-invariant density
        ``p(x)`` on ``R^{3N}`` is ``p(x(r)) · x₁² y₂`` times the volume of the rigid motions
        (module docstring). Add it to ``-βU`` to get the target's log density on ``r``."""
        r = check_inputs(self, r, None, "r")
        return 2 * jnp.log(r[0]) + jnp.log(r[2])

    def to_positions(self, r: Array) -> Array:
        """Positions ``(N, 3)`` in atom order (the canonical frame) from ``r``."""
        r = check_inputs(self, r, None, "r")
        p = self._rows_from_r(r)
        order = np.argsort(self.atoms)
        return p[order]

    def from_positions(self, x: Array) -> Array:
        """``r`` of positions ``x`` ``(N, 3)`` (atom order): translated and rotated into the
        canonical frame (a proper rotation; mirror images stay distinct)."""
        x = jnp.asarray(x)
        if x.shape != (self.n_atoms, 3):
            raise ValueError(f"positions must have shape ({self.n_atoms}, 3), got {x.shape}")
        p = x[self.atoms] - x[self.atoms[0]]
        e1 = _unit(p[1])
        v = p[2] - jnp.dot(p[2], e1) * e1
        e2 = _unit(v)
        e3 = jnp.cross(e1, e2)
        q = p @ jnp.stack([e1, e2, e3], axis=1)
        return jnp.concatenate([q[1, :1], q[2, :2], q[3:].reshape(-1)])
