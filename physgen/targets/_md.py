"""Reference molecular dynamics: Langevin dynamics of an ``openmm.System`` run by OpenMM."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from .._base import Key, check_int
from ._openmm import check_system, import_openmm, kT


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Samples of a simulation: ``positions`` ``(n_samples, n_atoms, 3)`` in nm and
    ``potential_energies`` ``(n_samples,)`` in kJ/mol (float64), one every ``interval``
    steps of ``timestep`` ps at ``temperature`` K, after ``equilibration`` steps. With
    replica exchange: the hotter ``replica_temperatures`` and the swap acceptance rate of
    each neighbouring pair, ``exchange_acceptance`` ``(len(replica_temperatures),)``."""

    positions: np.ndarray
    potential_energies: np.ndarray
    temperature: float
    timestep: float
    interval: int
    equilibration: int
    replica_temperatures: tuple[float, ...] = ()
    exchange_acceptance: np.ndarray | None = None

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
    replica_temperatures: Sequence[float] = (),
) -> Trajectory:
    """Sample ``exp(-U/k_B T)`` of ``system`` by OpenMM's ``LangevinMiddleIntegrator``
    (BAOAB-type splitting; ``friction`` in 1/ps, ``timestep`` in ps: 1 fs by default, safe
    without constraints on bonds to hydrogen) from ``positions`` ``(n_atoms, 3)`` (nm).

    Velocities are drawn at ``temperature``; after ``equilibration`` steps, one sample every
    ``interval`` steps. ``key`` seeds OpenMM's random numbers, so a key gives the same
    trajectory on the same platform (``"Reference"``: float64, deterministic; ``"CPU"``:
    faster). Samples are correlated: estimate errors with their autocorrelation time
    (:mod:`physgen.diagnostics`). Cost: ``equilibration + n_samples · interval`` steps.

    Replica exchange (parallel tempering) for basins that one trajectory does not cross:
    ``replica_temperatures`` (increasing, above ``temperature``) adds a Langevin replica at
    each, all from ``positions``. Every ``interval`` steps (equilibration included)
    neighbouring replicas swap configurations, the pairs (0, 1), (2, 3), … and (1, 2), …
    in turn, with probability ``min(1, exp[(β_i − β_j)(U_i − U_j)])``, the velocities
    rescaled by ``sqrt(T_new / T_old)``. This leaves the product of the Boltzmann densities
    invariant, so the returned trajectory, the replica at ``temperature``, samples
    ``exp(-U/k_B T)`` (a Markov chain: its errors again from its autocorrelation). Cost:
    ``(1 + len(replica_temperatures))`` times the steps of one trajectory.
    """
    mm = import_openmm()
    check_system(system, "langevin_md")
    n_samples = check_int("n_samples", n_samples, 1)
    interval = check_int("interval", interval, 1)
    equilibration = check_int("equilibration", equilibration, 0)
    kT(temperature)  # checks temperature > 0
    temperatures = [float(temperature), *(float(t) for t in replica_temperatures)]
    if any(not hot > cold for cold, hot in zip(temperatures[:-1], temperatures[1:], strict=True)):
        raise ValueError(f"replica_temperatures must increase from temperature = {temperature}"
                         f" K, got {list(replica_temperatures)}")
    if not (timestep > 0 and friction > 0):
        raise ValueError(f"timestep and friction must be > 0, got {timestep}, {friction}")
    x0 = np.asarray(positions, dtype=np.float64)
    if x0.shape != (system.getNumParticles(), 3):
        raise ValueError(f"positions must have shape ({system.getNumParticles()}, 3), got "
                         f"{x0.shape}")
    replicas = []
    for i, t in enumerate(temperatures):
        # OpenMM reads seed 0 as "random"; replica 0 keeps the seeds of a single trajectory
        seeds = jax.random.randint(key if i == 0 else jax.random.fold_in(key, i), (2,), 1,
                                   2**31 - 1)
        integrator = mm.LangevinMiddleIntegrator(t, friction, timestep)
        integrator.setRandomNumberSeed(int(seeds[0]))
        context = mm.Context(system, integrator, mm.Platform.getPlatformByName(platform))
        context.setPositions(x0)
        context.setVelocitiesToTemperature(t, int(seeds[1]))
        replicas.append((context, integrator))
    exchange = _Exchange(temperatures, replicas, jax.random.fold_in(key, len(temperatures)))
    nm, kj = mm.unit.nanometer, mm.unit.kilojoule_per_mole
    if len(replicas) == 1:
        replicas[0][1].step(equilibration)
    else:
        for n in [interval] * (equilibration // interval) + [equilibration % interval]:
            exchange.advance(n)
    exchange.reset_counts()
    xs = np.empty((n_samples,) + x0.shape)
    us = np.empty(n_samples)
    for s in range(n_samples):
        exchange.advance(interval)
        state = replicas[0][0].getState(getPositions=True, getEnergy=True)
        xs[s] = state.getPositions(asNumpy=True).value_in_unit(nm)
        us[s] = state.getPotentialEnergy().value_in_unit(kj)
    return Trajectory(xs, us, float(temperature), float(timestep), interval, equilibration,
                      tuple(temperatures[1:]),
                      exchange.acceptance() if len(replicas) > 1 else None)


class _Exchange:
    """The replicas' steps and their neighbour swaps (nothing to swap with one replica)."""

    def __init__(self, temperatures, replicas, key):
        self.beta = np.array([1.0 / kT(t) for t in temperatures])  # mol/kJ
        self.temperatures = np.asarray(temperatures)
        self.replicas = replicas
        self.rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
        self.kj = import_openmm().unit.kilojoule_per_mole
        self.parity = 0
        self.reset_counts()

    def reset_counts(self):
        self.tried = np.zeros(len(self.replicas) - 1)
        self.accepted = np.zeros(len(self.replicas) - 1)

    def acceptance(self) -> np.ndarray:
        return self.accepted / np.maximum(self.tried, 1)

    def advance(self, steps: int) -> None:
        for _, integrator in self.replicas:
            integrator.step(steps)
        if len(self.replicas) == 1 or steps == 0:
            return
        states = [c.getState(getPositions=True, getVelocities=True, getEnergy=True)
                  for c, _ in self.replicas]
        energies = [s.getPotentialEnergy().value_in_unit(self.kj) for s in states]
        for i in range(self.parity, len(self.replicas) - 1, 2):
            j = i + 1
            self.tried[i] += 1
            log_a = (self.beta[i] - self.beta[j]) * (energies[i] - energies[j])
            if np.log(self.rng.uniform()) < log_a:
                self.accepted[i] += 1
                for a, b in ((i, j), (j, i)):  # replica a takes b's configuration
                    context = self.replicas[a][0]
                    context.setPositions(states[b].getPositions(asNumpy=True))
                    context.setVelocities(states[b].getVelocities(asNumpy=True)
                                          * np.sqrt(self.temperatures[a] / self.temperatures[b]))
                states[i], states[j] = states[j], states[i]
                energies[i], energies[j] = energies[j], energies[i]
        self.parity = 1 - self.parity
