"""Value checks under ``jit``: a non-finite energy names its target."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._base import Array, Scalar
from ._base import AbstractTarget


def checked_energy(target: AbstractTarget, x: Array) -> Scalar:
    """``target.energy(x)`` that raises (via ``eqx.error_if``) when the energy is NaN or inf.

    Works under ``jit``/``vmap``/``grad``; the error names the target class, e.g.
    ``"DoubleWell.energy returned a non-finite value (NaN or inf)"``. Single example ``x`` of
    shape ``target.event_shape`` -> scalar.
    """
    e = target.energy(x)
    return eqx.error_if(
        e,
        ~jnp.isfinite(e),
        f"{type(target).__name__}.energy returned a non-finite value (NaN or inf)",
    )


def checked_log_density(target: AbstractTarget, x: Array) -> Scalar:
    """``target.log_density(x)`` with the same non-finite check as :func:`checked_energy`."""
    lp = target.log_density(x)
    return eqx.error_if(
        lp,
        ~jnp.isfinite(lp),
        f"{type(target).__name__}.log_density returned a non-finite value (NaN or inf)",
    )
