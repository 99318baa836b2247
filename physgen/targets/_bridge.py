"""Any ``openmm.System`` as a JAX target, evaluated by OpenMM through ``jax.pure_callback``."""

from __future__ import annotations

import functools
import threading

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Scalar, Shape, check_single_example
from ._base import AbstractTarget
from ._openmm import check_system, import_openmm, kT


class _Evaluator:
    """One OpenMM ``Context`` and the host functions that JAX calls back.

    ``__call__(x)`` takes positions ``(..., n, 3)`` (nm) and returns the potential energies
    ``(...)`` (kJ/mol) and forces ``(..., n, 3)`` (kJ/mol/nm), one configuration at a time
    on one Context (a lock makes concurrent callbacks wait). Compared by identity, so it can
    be a static field.
    """

    def __init__(self, system, platform: str):
        mm = import_openmm()
        # a copy: later edits of the caller's System must not change the target
        self.system = mm.XmlSerializer.clone(system)
        properties = {"Threads": "1"} if platform == "CPU" else {}
        self.context = mm.Context(self.system, mm.VerletIntegrator(0.001),
                                  mm.Platform.getPlatformByName(platform), properties)
        self.n = system.getNumParticles()
        u = mm.unit
        self.energy_unit = u.kilojoule_per_mole
        self.force_unit = u.kilojoule_per_mole / u.nanometer
        self.lock = threading.Lock()

    def __call__(self, x: np.ndarray, forces: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.asarray(x, dtype=np.float64)
        batch = x.shape[:-2]
        flat = x.reshape(-1, self.n, 3)
        energies = np.empty(len(flat))
        f = np.empty_like(flat) if forces else None
        with self.lock:
            for b, positions in enumerate(flat):
                self.context.setPositions(positions)
                state = self.context.getState(getEnergy=True, getForces=forces)
                energies[b] = state.getPotentialEnergy().value_in_unit(self.energy_unit)
                if forces:
                    f[b] = state.getForces(asNumpy=True).value_in_unit(self.force_unit)
        return energies.reshape(batch), None if f is None else f.reshape(x.shape)


def _callback_energy(evaluator, x):
    dtype = x.dtype

    def host(v):
        return evaluator(v, forces=False)[0].astype(dtype)

    return jax.pure_callback(host, jax.ShapeDtypeStruct((), dtype), x,
                             vmap_method="expand_dims")


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _potential(evaluator, x):
    return _callback_energy(evaluator, x)


@_potential.defjvp
def _potential_jvp(evaluator, primals, tangents):
    (x,), (dx,) = primals, tangents
    dtype = x.dtype

    def host(v):
        e, f = evaluator(v, forces=True)
        return e.astype(dtype), f.astype(dtype)

    e, f = jax.pure_callback(
        host, (jax.ShapeDtypeStruct((), dtype), jax.ShapeDtypeStruct(x.shape, dtype)), x,
        vmap_method="expand_dims")
    # dU = -F · dx: linear in the tangent, so reverse mode (grad) transposes it
    return e, -jnp.sum(f * dx)


class OpenMMBridge(AbstractTarget):
    """The Boltzmann density of ANY ``openmm.System`` at ``temperature``, evaluated by
    OpenMM on the host through ``jax.pure_callback``.

    ``energy(x) = U(x) / k_B T`` for ONE configuration ``x`` of shape ``(n_atoms, 3)`` in
    nm (``beta = 1``); ``potential_energy(x)`` in kJ/mol. Works under ``jit``, ``vmap``
    (the batch is passed to OpenMM in one callback) and ``grad`` (first order: the
    gradient is ``-F/k_B T`` with OpenMM's forces; no second derivatives).

    Cost: every configuration is one ``setPositions`` + ``getState`` on one OpenMM
    ``Context``, serially on the host, plus a device-host copy per batch; nothing runs in
    parallel and a GPU does not help. Alanine dipeptide on a CPU (best of several runs,
    energy and gradient): a batch of 1000 takes ~35-45 µs per configuration through the
    bridge against ~15 µs (float32) / ~25 µs (float64) for the port (:class:`ForceField`);
    one configuration ~170 µs against ~50-90 µs. ``platform``: ``"Reference"`` (float64,
    the default, reproducible) or ``"CPU"`` (mixed precision,
    one thread). Refuses constraints, virtual sites, barostats and thermostats by name.
    """

    evaluator: _Evaluator = eqx.field(static=True)
    masses: np.ndarray
    temperature: float = eqx.field(static=True)
    kT: float = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    event_shape: Shape = eqx.field(static=True)

    def __init__(self, system, temperature: float = 300.0, *, platform: str = "Reference"):
        self.kT = kT(temperature)
        self.temperature = float(temperature)
        self.masses = check_system(system, "OpenMMBridge")
        if platform not in ("Reference", "CPU"):
            raise ValueError(f"platform must be 'Reference' or 'CPU', got {platform!r}")
        self.evaluator = _Evaluator(system, platform)
        self.beta = 1.0
        self.event_shape = (len(self.masses), 3)

    def potential_energy(self, x: Array) -> Scalar:
        """``U(x)`` in kJ/mol for one configuration ``(n_atoms, 3)`` in nm."""
        check_single_example(x, self.event_shape, "OpenMMBridge.potential_energy: x")
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        return _potential(self.evaluator, x)

    def energy(self, x: Array) -> Scalar:
        """``U(x) / k_B T`` for one configuration ``(n_atoms, 3)`` in nm."""
        return self.potential_energy(x) / jnp.asarray(self.kT, jnp.result_type(x))
