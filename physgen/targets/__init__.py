"""Targets: unnormalised Boltzmann densities ``exp(-beta * E(x))``, some with exact references;
force fields from an ``openmm.System`` (a JAX port and a bridge to OpenMM), alanine dipeptide."""

from ._alanine import (
    ALANINE_DIPEPTIDE_ATOMS as ALANINE_DIPEPTIDE_ATOMS,
    ALANINE_DIPEPTIDE_ZMATRIX as ALANINE_DIPEPTIDE_ZMATRIX,
    PHI_ATOMS as PHI_ATOMS,
    PSI_ATOMS as PSI_ATOMS,
    Molecule as Molecule,
    alanine_dipeptide as alanine_dipeptide,
)
from ._base import AbstractExactTarget as AbstractExactTarget, AbstractTarget as AbstractTarget
from ._bridge import OpenMMBridge as OpenMMBridge
from ._checks import checked_energy as checked_energy, checked_log_density as checked_log_density
from ._double_well import DoubleWell as DoubleWell
from ._force_field import ForceField as ForceField
from ._gaussian import Gaussian as Gaussian
from ._gaussian_mixture import GaussianMixture as GaussianMixture, fab_gmm40 as fab_gmm40
from ._internal import InternalCoordinateTarget as InternalCoordinateTarget
from ._linlogcut import LinLogCut as LinLogCut
from ._many_well import ManyWell as ManyWell
from ._md import Trajectory as Trajectory, langevin_md as langevin_md
from ._mueller_brown import MuellerBrown as MuellerBrown
from ._particles import LennardJones as LennardJones, MultiDoubleWell as MultiDoubleWell
from ._phi4 import ALBERGO_ENSEMBLES as ALBERGO_ENSEMBLES, FreeField as FreeField, Phi4 as Phi4
from ._pullback import Pullback as Pullback
