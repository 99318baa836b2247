"""Molecular observables per configuration: torsion angles (e.g. the backbone φ, ψ of a
Ramachandran plot), bond angles and distances of listed atoms."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, bond_angle, bond_length, torsion


def _atoms(atoms: ArrayLike, k: int, what: str) -> np.ndarray:
    idx = np.asarray(atoms)
    if idx.ndim == 1:
        idx = idx[None]
    if idx.ndim != 2 or idx.shape[1] != k or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{what} needs atom indices of shape ({k},) or (m, {k}), got "
                         f"{idx.shape} ({idx.dtype})")
    return idx


def _check_positions(x, idx, what):
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[-1] != 3:
        raise ValueError(f"{what}: positions must have shape (..., n_atoms, 3), got {x.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[-2]):
        raise ValueError(f"{what}: atom indices must lie in [0, {x.shape[-2]}), got "
                         f"{idx.min()}..{idx.max()}")
    return x


def torsion_angles(x: ArrayLike, atoms: ArrayLike) -> Array:
    """Torsions ``φ(a, b, c, d)`` in ``(-π, π]`` (IUPAC sign) of positions ``x`` of shape
    ``(..., n_atoms, 3)`` for ``atoms`` ``(m, 4)`` (or one quadruple ``(4,)``); returns
    ``(..., m)``."""
    idx = _atoms(atoms, 4, "torsion_angles")
    x = _check_positions(x, idx, "torsion_angles")
    return torsion(*(x[..., idx[:, c], :] for c in range(4)))


def bond_angles(x: ArrayLike, atoms: ArrayLike) -> Array:
    """Angles ``∠abc`` in ``[0, π]`` for ``atoms`` ``(m, 3)``; returns ``(..., m)``."""
    idx = _atoms(atoms, 3, "bond_angles")
    x = _check_positions(x, idx, "bond_angles")
    return bond_angle(*(x[..., idx[:, c], :] for c in range(3)))


def distances(x: ArrayLike, atoms: ArrayLike) -> Array:
    """Distances ``|b - a|`` for ``atoms`` ``(m, 2)``; returns ``(..., m)``."""
    idx = _atoms(atoms, 2, "distances")
    x = _check_positions(x, idx, "distances")
    return bond_length(x[..., idx[:, 0], :], x[..., idx[:, 1], :])
