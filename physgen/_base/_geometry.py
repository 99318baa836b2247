"""Molecular geometry on ONE configuration: bond lengths, bond angles and torsions.

Shared by the force fields (``targets``), the internal-coordinate bijection (``bijections``)
and the molecular observables. Positions are ``(..., 3)`` arrays; every function broadcasts
over leading dimensions. The torsion follows the IUPAC convention (as OpenMM and most MD
codes): ``φ(a, b, c, d)`` is the angle between the planes ``(a, b, c)`` and ``(b, c, d)``,
positive when, looking along ``b -> c``, the bond ``c -> d`` is turned clockwise from
``b -> a``; ``φ`` lies in ``(-π, π]``.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._types import Array


def _norm(v: Array) -> Array:
    return jnp.sqrt(jnp.sum(v * v, axis=-1))


def bond_length(a: Array, b: Array) -> Array:
    """``|b - a|``."""
    return _norm(b - a)


def angle_between(u: Array, v: Array) -> Array:
    """The angle between vectors ``u`` and ``v``, in ``[0, π]``.

    Computed as ``atan2(|u × v|, u · v)``: accurate near 0 and π, where ``arccos`` loses
    half the digits and has an infinite derivative.
    """
    return jnp.arctan2(_norm(jnp.cross(u, v)), jnp.sum(u * v, axis=-1))


def bond_angle(a: Array, b: Array, c: Array) -> Array:
    """The angle at ``b`` between ``b -> a`` and ``b -> c``, in ``[0, π]``."""
    return angle_between(a - b, c - b)


def torsion(a: Array, b: Array, c: Array, d: Array) -> Array:
    r"""The torsion (dihedral) angle of ``a-b-c-d`` in ``(-π, π]``:

    .. math::
        φ = \operatorname{atan2}\big(|b_2|\, b_1 \cdot (b_2 × b_3),\;
            (b_1 × b_2) \cdot (b_2 × b_3)\big),

    with ``b_1 = b - a``, ``b_2 = c - b``, ``b_3 = d - c`` (no ``arccos``: exact gradients
    at ``φ = 0, π``).
    """
    return torsion_from_bonds(b - a, c - b, d - c)


def torsion_from_bonds(b1: Array, b2: Array, b3: Array) -> Array:
    """:func:`torsion` from the bond vectors ``b1 = b - a``, ``b2 = c - b``, ``b3 = d - c``."""
    n1, n2 = jnp.cross(b1, b2), jnp.cross(b2, b3)
    y = _norm(b2) * jnp.sum(b1 * n2, axis=-1)
    x = jnp.sum(n1 * n2, axis=-1)
    return jnp.arctan2(y, x)
