"""Reading an ``openmm.System``: OpenMM is imported on first use, and the checks that every
target built from a System shares.

OpenMM is an optional dependency (the ``molecules`` extra): ``import physgen`` never imports
it, so everything else works without it, and a target that needs it says which extra to
install.
"""

from __future__ import annotations

import importlib

import numpy as np

# kB·N_A in kJ/(mol K) (exact since the 2019 SI; OpenMM's MOLAR_GAS_CONSTANT_R)
MOLAR_GAS_CONSTANT = 8.31446261815324e-3

# Forces that add no energy (OpenMM "forces" that act on velocities or the box); a target's
# density depends on positions only, so they are ignored or refused, as listed here.
NO_ENERGY = ("CMMotionRemover",)
STATE_CHANGING = ("AndersenThermostat", "MonteCarloBarostat", "MonteCarloAnisotropicBarostat",
                  "MonteCarloMembraneBarostat", "MonteCarloFlexibleBarostat")


def import_openmm():
    """The ``openmm`` module (with ``openmm.app`` and ``openmm.unit`` loaded), or an
    ``ImportError`` that names the extra to install."""
    try:
        importlib.import_module("openmm.app")
        return importlib.import_module("openmm")
    except ImportError as e:
        raise ImportError(
            "physgen's molecular targets need OpenMM: pip install 'physgen[molecules]' "
            "(or pip install openmm)"
        ) from e


def kT(temperature: float) -> float:
    """``k_B T`` in kJ/mol at ``temperature`` kelvin."""
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0 kelvin, got {temperature}")
    return MOLAR_GAS_CONSTANT * float(temperature)


def force_name(force) -> str:
    """The class name of an OpenMM force (``"HarmonicBondForce"``), not SWIG's proxy name."""
    return type(force).__name__


def check_system(system, who: str) -> np.ndarray:
    """Refuse what no target on ``R^{N×3}`` can represent; return the masses (amu), ``(N,)``.

    - constraints: the Boltzmann density then lives on a submanifold of ``R^{N×3}``
      (build the System with ``constraints=None``, ``rigidWater=False``);
    - virtual sites (or massless particles): their positions follow from other atoms';
    - barostats and thermostats: they change the box or velocities, not the energy.
    """
    mm = import_openmm()
    if not isinstance(system, mm.System):
        raise TypeError(f"{who} needs an openmm.System, got {type(system).__name__}")
    n = system.getNumParticles()
    if n == 0:
        raise ValueError(f"{who}: the System has no particles")
    if system.getNumConstraints():
        raise ValueError(
            f"{who}: the System has {system.getNumConstraints()} constraints; its density "
            "would live on a submanifold. Build it with constraints=None and rigidWater=False"
        )
    virtual = [i for i in range(n) if system.isVirtualSite(i)]
    if virtual:
        raise ValueError(f"{who}: particles {virtual[:5]} are virtual sites; not supported")
    for k in range(system.getNumForces()):
        name = force_name(system.getForce(k))
        if name in STATE_CHANGING:
            raise ValueError(
                f"{who}: force {k} of the System is a {name}, which changes the state rather "
                "than adding energy; remove it (a target is a density at fixed volume)"
            )
    dalton = mm.unit.dalton
    return np.array([system.getParticleMass(i).value_in_unit(dalton) for i in range(n)],
                    dtype=np.float64)
