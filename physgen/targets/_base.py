"""The target interface: an unnormalised Boltzmann density ``exp(-beta * E(x))``."""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp

from .._base import Array, Scalar, Shape


class AbstractTarget(eqx.Module):
    """An unnormalised density ``p(x) ∝ exp(-beta * E(x))`` on ``R^event_shape``.

    ``energy(x)`` acts on ONE configuration of shape ``event_shape`` and returns a scalar in
    units of kT at ``beta = 1``; batch with ``jax.vmap``. ``log_density(x) = -beta * E(x)``
    (unnormalised). ``log_Z = log ∫ exp(-beta E(x)) dx`` is the exact normaliser where known.
    """

    event_shape: eqx.AbstractVar[Shape]
    beta: eqx.AbstractVar[float]

    @abc.abstractmethod
    def energy(self, x: Array) -> Scalar:
        """Potential energy of one configuration ``x`` of shape ``event_shape``."""

    def log_density(self, x: Array) -> Scalar:
        """Unnormalised log density ``-beta * E(x)`` of one configuration."""
        return -jnp.asarray(self.beta, dtype=jnp.result_type(x)) * self.energy(x)


class AbstractExactTarget(AbstractTarget):
    """Capability marker: a target whose normaliser and reference values are known exactly.

    ``log_Z()`` returns ``log ∫ exp(-beta E) dx`` (a float, computed by quadrature or in closed
    form); ``references()`` returns a dict of named exact expectations (e.g. ``p_A``,
    ``delta_F``) that experiments print beside their estimates.
    """

    @abc.abstractmethod
    def log_Z(self) -> float: ...

    @abc.abstractmethod
    def references(self) -> dict[str, float]: ...
