"""Lattice observables (magnetisation, χ₂, G(x), G(t), pole mass, Binder cumulant) with
errors; molecular ones (torsions such as φ, ψ, bond angles, distances); the integrated
autocorrelation time is :mod:`physgen.diagnostics`'s."""

from ..diagnostics import integrated_autocorrelation_time as integrated_autocorrelation_time
from ._lattice import (
    binder_cumulant as binder_cumulant,
    effective_mass as effective_mass,
    ensemble_mean as ensemble_mean,
    jackknife as jackknife,
    lattice_summary as lattice_summary,
    magnetization as magnetization,
    pole_mass as pole_mass,
    susceptibility as susceptibility,
    two_point_function as two_point_function,
    two_point_per_config as two_point_per_config,
    zero_momentum_correlator as zero_momentum_correlator,
)
from ._molecular import (
    bond_angles as bond_angles,
    distances as distances,
    torsion_angles as torsion_angles,
)
