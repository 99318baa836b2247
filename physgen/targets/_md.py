"""Reference molecular dynamics: Langevin dynamics of an ``openmm.System`` run by OpenMM."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from .._base import Key, check_int
from ._openmm import check_system, import_openmm, kT


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Samples of a simulation: ``positions`` ``(n_samples, n_atoms, 3)`` in nm and
    ``potential_energies`` ``(n_samples,)`` in kJ/mol (float64), one every ``interval``
    steps of ``timestep`` ps at ``temperature`` K, after ``equilibration`` steps."""

    positions: np.ndarray
    potential_energies: np.ndarray
    temperature: float
    timestep: float
    interval: int
    equilibration: int

    @property
    def reduced_energies(self) -> np.ndarray:
        """``U / k_B T`` of every sample, what the targets' ``energy`` returns."""
        return self.potential_energies / kT(self.temperature)


def langevin_md(
    key: Key,
    system,
    positions,
    *,
    temperature: float = 300.0,
    n_samples: int = 1000,
    interval: int = 250,
    equilibration: int = 10_000,
    timestep: float = 0.001,
    friction: float = 1.0,
    platform: str = "Reference",
) -> Trajectory:
    """Sample ``exp(-U/k_B T)`` of ``system`` by OpenMM's ``LangevinMiddleIntegrator``
    (BAOAB-type splitting; ``friction`` in 1/ps, ``timestep`` in ps: 1 fs by default, safe
    without constraints on bonds to hydrogen) from ``positions`` ``(n_atoms, 3)`` (nm).

    Velocities are drawn at ``temperature``; after ``equilibration`` steps, one sample every
    ``interval`` steps. ``key`` seeds OpenMM's random numbers, so a key gives the same
    trajectory on the same platform (``"Reference"``: float64, deterministic; ``"CPU"``:
    faster). Samples are correlated: estimate errors with their autocorrelation time
    (:mod:`physgen.diagnostics`). Cost: ``equilibration + n_samples · interval`` steps.
    """
    mm = import_openmm()
    check_system(system, "langevin_md")
    n_samples = check_int("n_samples", n_samples, 1)
    interval = check_int("interval", interval, 1)
    equilibration = check_int("equilibration", equilibration, 0)
    kT(temperature)  # checks temperature > 0
    if not (timestep > 0 and friction > 0):
        raise ValueError(f"timestep and friction must be > 0, got {timestep}, {friction}")
    x0 = np.asarray(positions, dtype=np.float64)
    if x0.shape != (system.getNumParticles(), 3):
        raise ValueError(f"positions must have shape ({system.getNumParticles()}, 3), got "
                         f"{x0.shape}")
    seeds = jax.random.randint(key, (2,), 1, 2**31 - 1)  # OpenMM reads seed 0 as "random"
    integrator = mm.LangevinMiddleIntegrator(temperature, friction, timestep)
    integrator.setRandomNumberSeed(int(seeds[0]))
    context = mm.Context(system, integrator, mm.Platform.getPlatformByName(platform))
    context.setPositions(x0)
    context.setVelocitiesToTemperature(temperature, int(seeds[1]))
    integrator.step(equilibration)
    nm, kj = mm.unit.nanometer, mm.unit.kilojoule_per_mole
    xs = np.empty((n_samples,) + x0.shape)
    us = np.empty(n_samples)
    for s in range(n_samples):
        integrator.step(interval)
        state = context.getState(getPositions=True, getEnergy=True)
        xs[s] = state.getPositions(asNumpy=True).value_in_unit(nm)
        us[s] = state.getPotentialEnergy().value_in_unit(kj)
    return Trajectory(xs, us, float(temperature), float(timestep), interval, equilibration)
