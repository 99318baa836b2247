"""Alanine dipeptide (ACE-ALA-NME, 22 atoms) with Amber ff99SB-ILDN in vacuum, built here:
the topology atom by atom and the starting structure from internal coordinates, so nothing
is downloaded. The force field file ``amber99sbildn.xml`` ships with OpenMM.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._openmm import import_openmm

# (residue, atom name, element), in the usual order of this molecule's PDB files
ALANINE_DIPEPTIDE_ATOMS = (
    ("ACE", "HH31", "H"), ("ACE", "CH3", "C"), ("ACE", "HH32", "H"), ("ACE", "HH33", "H"),
    ("ACE", "C", "C"), ("ACE", "O", "O"),
    ("ALA", "N", "N"), ("ALA", "H", "H"), ("ALA", "CA", "C"), ("ALA", "HA", "H"),
    ("ALA", "CB", "C"), ("ALA", "HB1", "H"), ("ALA", "HB2", "H"), ("ALA", "HB3", "H"),
    ("ALA", "C", "C"), ("ALA", "O", "O"),
    ("NME", "N", "N"), ("NME", "H", "H"), ("NME", "CH3", "C"), ("NME", "HH31", "H"),
    ("NME", "HH32", "H"), ("NME", "HH33", "H"),
)
ALANINE_DIPEPTIDE_BONDS = (
    (0, 1), (1, 2), (1, 3), (1, 4), (4, 5), (4, 6), (6, 7), (6, 8), (8, 9), (8, 10),
    (10, 11), (10, 12), (10, 13), (8, 14), (14, 15), (14, 16), (16, 17), (16, 18), (18, 19),
    (18, 20), (18, 21),
)
# The backbone torsions, as atom indices: φ = C(ACE)-N-CA-C, ψ = N-CA-C-N(NME)
PHI_ATOMS = (4, 6, 8, 14)
PSI_ATOMS = (6, 8, 14, 16)

# Z-matrix: rows (atom, bond partner j, angle partner k, torsion partner l), each atom placed
# from atoms of earlier rows at bond length |a - j|, angle a-j-k and torsion a-j-k-l; -1
# where a row needs fewer (the first three). Chosen for flows: only the true rotors are free
# torsions (φ, ψ, the two ω, the three methyl rotations); the other hydrogens, the second
# and third methyl hydrogens, CB, HA and the carbonyl O are placed by improper torsions
# against a neighbour (near-constant offsets such as ±120° or 180°), not as functions of a
# rotor. φ and ψ are the torsions of the rows of atoms 14 and 16. The values (nm, degrees)
# are standard geometry near the C7eq minimum.
ALANINE_DIPEPTIDE_ZMATRIX = np.array([
    (1, -1, -1, -1), (4, 1, -1, -1), (5, 4, 1, -1), (6, 4, 1, 5),
    (0, 1, 4, 5), (2, 1, 4, 0), (3, 1, 4, 0),
    (8, 6, 4, 1), (7, 6, 8, 4), (14, 8, 6, 4), (10, 8, 6, 14), (9, 8, 6, 14),
    (16, 14, 8, 6), (15, 14, 8, 16), (18, 16, 14, 8), (17, 16, 18, 14),
    (11, 10, 8, 6), (12, 10, 8, 11), (13, 10, 8, 11),
    (19, 18, 16, 14), (20, 18, 16, 19), (21, 18, 16, 19),
], dtype=np.int32)
_GEOMETRY = np.array([  # (bond, angle, torsion) of each row
    (0, 0, 0), (0.152, 0, 0), (0.123, 121, 0), (0.133, 116, 180),
    (0.109, 109.5, 0), (0.109, 109.5, 120), (0.109, 109.5, -120),
    (0.146, 122, 180), (0.101, 119, 180), (0.153, 110, -80), (0.153, 110, -120),
    (0.109, 109.5, 120),
    (0.133, 116, 70), (0.123, 121, 180), (0.146, 122, 180), (0.101, 119, 180),
    (0.109, 109.5, 60), (0.109, 109.5, 120), (0.109, 109.5, -120),
    (0.109, 109.5, 60), (0.109, 109.5, 120), (0.109, 109.5, -120),
])


@dataclasses.dataclass(frozen=True)
class Molecule:
    """A molecule ready for simulation: ``topology`` (``openmm.app.Topology``), ``system``
    (``openmm.System``, no constraints), ``positions`` ``(n_atoms, 3)`` in nm (float64),
    and a ``zmatrix`` ``(n_atoms, 4)`` of int (see ``ALANINE_DIPEPTIDE_ZMATRIX``)."""

    topology: object
    system: object
    positions: np.ndarray
    zmatrix: np.ndarray


def _place(zmatrix: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    """Cartesian positions from a Z-matrix and its (bond nm, angle °, torsion °) values, the
    first atom at the origin, the second on +x, the third in the xy plane."""
    x = np.zeros((len(zmatrix), 3))
    for row, ((a, j, k, m_), (b, theta, phi)) in enumerate(zip(zmatrix, geometry, strict=True)):
        theta, phi = np.radians(theta), np.radians(phi)
        if row == 0:
            continue
        if row == 1:
            x[a] = x[j] + (b, 0, 0)
            continue
        u = (x[k] - x[j]) / np.linalg.norm(x[k] - x[j])
        if row == 2:
            x[a] = x[j] + b * (np.cos(theta) * u + np.sin(theta) * np.array([0.0, 1.0, 0.0]))
            continue
        # NeRF: the bond a-j at angle θ from j->k, turned by φ about j-k from the plane jkl
        n = np.cross(x[k] - x[m_], u)
        n /= np.linalg.norm(n)
        w = np.cross(u, n)
        x[a] = x[j] + b * (np.cos(theta) * u - np.sin(theta) * (np.cos(phi) * w
                                                                  + np.sin(phi) * n))
    return x


def alanine_dipeptide(*, minimize: bool = True, tolerance: float = 1.0) -> Molecule:
    """Alanine dipeptide (ACE-ALA-NME, 22 atoms, L-alanine) with Amber ff99SB-ILDN in vacuum
    (``NoCutoff``, no constraints, a ``CMMotionRemover`` for MD).

    The positions are built from ``ALANINE_DIPEPTIDE_ZMATRIX`` with standard geometry near
    the C7eq conformation (φ ≈ -80°, ψ ≈ 70°) and, with ``minimize=True``, relaxed with
    OpenMM's L-BFGS minimiser (Reference platform, float64) until the largest force is below
    ``tolerance`` kJ/mol/nm. Atom order: ``ALANINE_DIPEPTIDE_ATOMS``; φ and ψ:
    ``PHI_ATOMS``, ``PSI_ATOMS``.
    """
    mm = import_openmm()
    app = mm.app
    topology = app.Topology()
    chain = topology.addChain()
    atoms, residues = [], {}
    for res_name, name, symbol in ALANINE_DIPEPTIDE_ATOMS:
        if res_name not in residues:
            residues[res_name] = topology.addResidue(res_name, chain)
        atoms.append(topology.addAtom(name, app.Element.getBySymbol(symbol),
                                      residues[res_name]))
    for i, j in ALANINE_DIPEPTIDE_BONDS:
        topology.addBond(atoms[i], atoms[j])
    system = app.ForceField("amber99sbildn.xml").createSystem(
        topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False)
    positions = _place(ALANINE_DIPEPTIDE_ZMATRIX, _GEOMETRY)
    if minimize:
        context = mm.Context(system, mm.VerletIntegrator(0.001),
                             mm.Platform.getPlatformByName("Reference"))
        context.setPositions(positions)
        mm.LocalEnergyMinimizer.minimize(context, tolerance, 0)
        state = context.getState(getPositions=True)
        positions = state.getPositions(asNumpy=True).value_in_unit(mm.unit.nanometer)
    return Molecule(topology, system, np.asarray(positions, dtype=np.float64),
                    ALANINE_DIPEPTIDE_ZMATRIX.copy())
