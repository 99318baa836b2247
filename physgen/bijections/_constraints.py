"""The one parameterisation of positive quantities in physgen.

Every positive parameter (affine and coupling scales, LU diagonals, ActNorm scales, spline
knot derivatives) is stored as an unconstrained real array ``raw`` and read through

    positive(raw) = softplus(raw) = log(1 + exp(raw)),

with the exact inverse ``inv_positive(y) = log(expm1(y))``, evaluated stably as
``y + log(-expm1(-y))``. A user-given positive value ``v`` is therefore stored as
``inv_positive(v)``; constructors read it back with ``positive``.

Positive quantities *predicted by a network* (coupling scales, spline derivatives) must be
exactly one when the network's zero-initialised last layer outputs ``raw = 0`` and must stay
above a floor. They use the same softplus, shifted:

    unit_positive(raw, minimum) = minimum + softplus(raw + inv_positive(1 - minimum)),

so ``unit_positive(0, m) == 1`` and ``unit_positive(raw, m) > m`` for every ``raw``.
Spline bin widths and heights are fractions summing to one:
``minimum + (1 - K * minimum) * softmax(raw)`` (uniform bins at ``raw = 0``).

Do not change these formulas: saved models store ``raw`` values.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike


def positive(raw: ArrayLike) -> Array:
    """``softplus(raw) > 0``, elementwise."""
    return jax.nn.softplus(raw)


def inv_positive(value: ArrayLike) -> Array:
    """Inverse of :func:`positive`: ``log(expm1(value))`` for ``value > 0`` (stable form)."""
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.inexact):
        value = value.astype(jnp.result_type(float))
    return value + jnp.log(-jnp.expm1(-value))


def _inv_softplus_scalar(value: float) -> float:
    return value + math.log(-math.expm1(-value))


def unit_positive(raw: ArrayLike, minimum: float = 0.0) -> Array:
    """``minimum + softplus(raw + inv_positive(1 - minimum))``: equals 1 at ``raw = 0``.

    Requires ``0 <= minimum < 1``; the result is always ``> minimum``.
    """
    if not 0.0 <= minimum < 1.0:
        raise ValueError(f"minimum must lie in [0, 1), got {minimum}")
    return minimum + jax.nn.softplus(raw + _inv_softplus_scalar(1.0 - minimum))


def bin_fractions(raw: ArrayLike, minimum: float = 0.0) -> Array:
    """``minimum + (1 - K minimum) softmax(raw)`` over the last axis of size ``K``.

    Positive fractions summing to one, each ``>= minimum``; uniform (``1/K``) at ``raw = 0``.
    """
    raw = jnp.asarray(raw)
    k = raw.shape[-1]
    if not 0.0 <= minimum * k < 1.0:
        raise ValueError(f"minimum * num_bins must lie in [0, 1), got {minimum} * {k}")
    return minimum + (1.0 - minimum * k) * jax.nn.softmax(raw, axis=-1)


def check_positive(value: ArrayLike, what: str) -> None:
    """Raise ``ValueError`` unless every entry of a concrete ``value`` is finite and ``> 0``.

    Traced values (inside ``jit``/``vmap``) cannot be inspected and are let through.
    """
    if isinstance(value, jax.core.Tracer):
        return
    arr = np.asarray(value)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        raise ValueError(
            f"{what} must be finite and > 0 everywhere; {int(bad.sum())} of {arr.size} "
            f"entries are not (e.g. {arr.reshape(-1)[np.argmax(bad.reshape(-1))]!r})"
        )
