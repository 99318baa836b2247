"""Conditional probability paths ``x_t = a(t) x1 + b(t) x0`` from noise ``x0`` to data ``x1``."""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, ArrayLike, Scalar


class AbstractProbabilityPath(eqx.Module):
    """An affine conditional path between a noise draw ``x0`` (``t = 0``) and a data point
    ``x1`` (``t = 1``): ``x_t = a(t) x1 + b(t) x0``, whose conditional velocity is
    ``u_t(x0, x1) = a'(t) x1 + b'(t) x0`` (Lipman et al. 2023; with ``x0 ~ N(0, I)`` this is
    their ``u_t(x | x1)`` for the Gaussian path ``N(a x1, b² I)``).

    Concrete paths implement ``coefficients(t) -> (a, b)``; ``t_min`` and ``t_max`` bound the
    times where the path is used (the VP path is singular at ``t = 1``). ``a'`` and ``b'``
    come from forward-mode autodiff. All methods act on one example (scalar ``t``).
    """

    t_min: eqx.AbstractVar[float]
    t_max: eqx.AbstractVar[float]

    @abc.abstractmethod
    def coefficients(self, t: ArrayLike) -> tuple[Scalar, Scalar]:
        """``(a(t), b(t))``, scalars."""

    def sample(self, t: ArrayLike, x0: Array, x1: Array) -> Array:
        """``x_t = a(t) x1 + b(t) x0``; same shape as ``x0`` and ``x1``."""
        a, b = self.coefficients(t)
        return a * x1 + b * x0

    def velocity(self, t: ArrayLike, x0: Array, x1: Array) -> Array:
        """``u_t = a'(t) x1 + b'(t) x0`` (conditional target of flow matching)."""
        t = jnp.asarray(t, dtype=jnp.result_type(x0.dtype, float))
        _, (da, db) = jax.jvp(self.coefficients, (t,), (jnp.ones_like(t),))
        return da * x1 + db * x0

    def sample_and_velocity(self, t: ArrayLike, x0: Array, x1: Array) -> tuple[Array, Array]:
        """``(x_t, u_t)`` in one pass."""
        t = jnp.asarray(t, dtype=jnp.result_type(x0.dtype, float))
        (a, b), (da, db) = jax.jvp(self.coefficients, (t,), (jnp.ones_like(t),))
        return a * x1 + b * x0, da * x1 + db * x0


class LinearPath(AbstractProbabilityPath):
    """Straight lines (rectified flow, Liu et al. 2023; Lipman et al. 2023's OT path):
    ``x_t = t x1 + (1 - (1 - σ_min) t) x0``, ``u_t = x1 - (1 - σ_min) x0``.

    With ``sigma_min = 0`` the path ends exactly at the data; ``σ_min > 0`` ends at the data
    blurred by ``N(0, σ_min² I)`` (with Gaussian ``x0``), which keeps the target field smooth.
    """

    sigma_min: float
    t_min: float
    t_max: float

    def __init__(self, sigma_min: float = 0.0):
        if not 0 <= sigma_min < 1:
            raise ValueError(f"sigma_min must lie in [0, 1), got {sigma_min}")
        self.sigma_min = float(sigma_min)
        self.t_min, self.t_max = 0.0, 1.0

    def coefficients(self, t):
        t = jnp.asarray(t)
        return t, 1 - (1 - self.sigma_min) * t


class VPPath(AbstractProbabilityPath):
    """The variance-preserving diffusion path written forward in time (Lipman et al. 2023,
    eq. 19; Song et al. 2021's VP SDE): ``a(t) = α(1 - t)``, ``b(t) = √(1 - α(1 - t)²)`` with
    ``α(s) = exp(-½ ∫_0^s β)``, ``β(s) = β_min + s (β_max - β_min)``.

    ``a(0) = exp(-(β_min + β_max)/4) ≈ 0.007`` for the defaults, so ``x_0`` is nearly pure
    noise; ``b'`` diverges at ``t = 1``, so training times are drawn up to ``t_max = 1 - eps``
    and a flow trained on this path should stop at ``t1 = t_max``.
    """

    beta_min: float
    beta_max: float
    t_min: float
    t_max: float

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3):
        if not 0 <= beta_min <= beta_max or beta_max <= 0:
            raise ValueError(
                f"need 0 <= beta_min <= beta_max, beta_max > 0; got {beta_min}, {beta_max}"
            )
        if not 0 < eps < 1:
            raise ValueError(f"eps must lie in (0, 1), got {eps}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.t_min, self.t_max = 0.0, 1.0 - float(eps)

    def coefficients(self, t):
        s = 1 - jnp.asarray(t)
        integral = self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2
        a = jnp.exp(-0.5 * integral)
        # 1 - a² = -expm1(-∫β), accurate near t = 1
        return a, jnp.sqrt(-jnp.expm1(-integral))


def _check_time(path: AbstractProbabilityPath, t0: float, t1: float):
    if t0 != path.t_min or not (path.t_min < t1 <= path.t_max + 1e-12) or not math.isfinite(t1):
        raise ValueError(
            f"flow matching on {type(path).__name__} needs a flow from noise at t0 = "
            f"{path.t_min} to data at t1 in ({path.t_min}, {path.t_max}]; the flow runs from "
            f"t0 = {t0} to t1 = {t1}"
        )
