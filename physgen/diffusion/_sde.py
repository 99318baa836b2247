"""Linear forward SDEs with Gaussian perturbation kernels (Song et al. 2021): VP and VE."""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, ArrayLike, Key, Scalar, Shape
from ..bijections._affine import Affine
from ..distributions._base import AbstractDistribution
from ..distributions._normal import StandardNormal
from ..distributions._transformed import Transformed

_LOG_2PI = math.log(2.0 * math.pi)


class AbstractSDE(eqx.Module):
    r"""A linear forward SDE ``dx = f(t) x dt + g(t) dw`` on ``t ∈ [0, T]``.

    Its perturbation kernel is Gaussian, ``p_{0t}(x_t | x_0) = N(α(t) x_0, σ(t)² I)``, with
    ``α' = f α`` and ``(σ²)' = 2 f σ² + g²``. Concrete SDEs give the drift coefficient
    ``f(t)`` (``drift_coefficient``), the diffusion ``g(t)`` (``diffusion``), the kernel
    ``(α(t), σ(t))`` (``marginal``), the log signal-to-noise ratio ``λ(t) = log(α²/σ²)``
    (``log_snr``, decreasing in ``t``) and its inverse, and the scale ``prior_std`` of the
    prior ``π = N(0, prior_std² I)`` that approximates ``p_T``. Everything acts on scalars
    ``t`` and one example ``x`` of any shape; batch with ``jax.vmap``.

    A useful identity, used for importance sampling of ``t``: ``g²/σ² = -dλ/dt``.
    """

    T: eqx.AbstractVar[float]

    @abc.abstractmethod
    def drift_coefficient(self, t: ArrayLike) -> Scalar:
        """``f(t)``: the drift is ``f(x, t) = f(t) x``."""

    @abc.abstractmethod
    def diffusion(self, t: ArrayLike) -> Scalar:
        """``g(t) ≥ 0``."""

    @abc.abstractmethod
    def marginal(self, t: ArrayLike) -> tuple[Scalar, Scalar]:
        """``(α(t), σ(t))``: ``x_t | x_0 ~ N(α(t) x_0, σ(t)² I)``."""

    @abc.abstractmethod
    def log_snr(self, t: ArrayLike) -> Scalar:
        """``λ(t) = log(α(t)² / σ(t)²)`` (strictly decreasing)."""

    @abc.abstractmethod
    def log_snr_inverse(self, lam: ArrayLike) -> Scalar:
        """The time ``t`` with ``λ(t) = lam``."""

    @abc.abstractmethod
    def prior_std(self) -> float:
        """Scale ``s`` of the prior ``π = N(0, s² I)`` at ``t = T``."""

    # -- derived quantities (concrete) ------------------------------------------------------
    def drift(self, t: ArrayLike, x: Array) -> Array:
        """``f(x, t) = f(t) x``; ``x`` of any shape -> same shape."""
        return self.drift_coefficient(t) * x

    def marginal_mean(self, t: ArrayLike, x0: Array) -> Array:
        """``E[x_t | x_0] = α(t) x_0``."""
        return self.marginal(t)[0] * x0

    def marginal_std(self, t: ArrayLike) -> Scalar:
        """``σ(t)``, the standard deviation of ``x_t | x_0`` (each entry)."""
        return self.marginal(t)[1]

    def transition(self, s: ArrayLike, t: ArrayLike) -> tuple[Scalar, Scalar]:
        """``(a, v)`` for ``s ≤ t``: ``x_t | x_s ~ N(a x_s, v I)``, ``a = α_t/α_s``,
        ``v = σ_t² - a² σ_s²``."""
        a_s, s_s = self.marginal(s)
        a_t, s_t = self.marginal(t)
        a = a_t / a_s
        return a, jnp.maximum(s_t**2 - (a * s_s) ** 2, 0.0)

    def perturb(self, key: Key, t: ArrayLike, x0: Array) -> tuple[Array, Array]:
        """Draw ``x_t = α x_0 + σ z``, ``z ~ N(0, I)``; returns ``(x_t, z)``."""
        alpha, sigma = self.marginal(t)
        z = jax.random.normal(key, jnp.shape(x0), jnp.result_type(x0, float))
        return alpha * x0 + sigma * z, z

    def reverse_drift(self, t: ArrayLike, x: Array, score: Array) -> Array:
        """Drift of the reverse-time SDE, ``f(x, t) - g(t)² s`` (Anderson 1982)."""
        return self.drift(t, x) - self.diffusion(t) ** 2 * score

    def probability_flow_drift(self, t: ArrayLike, x: Array, score: Array) -> Array:
        """``dx/dt = f(x, t) - ½ g(t)² s`` (the probability-flow ODE)."""
        return self.drift(t, x) - 0.5 * self.diffusion(t) ** 2 * score

    def prior(self, shape: Shape) -> AbstractDistribution:
        """The prior ``π = N(0, prior_std² I)`` on ``R^shape`` as a distribution."""
        base = StandardNormal(tuple(shape))
        s = self.prior_std()
        if s == 1.0:
            return base
        return Transformed(base, Affine(jnp.zeros(tuple(shape)), jnp.full(tuple(shape), s)))

    def prior_log_prob(self, x: Array) -> Scalar:
        """``log π(x)`` for one example of any shape."""
        s = self.prior_std()
        return -0.5 * jnp.sum(x**2) / s**2 - x.size * (math.log(s) + 0.5 * _LOG_2PI)


def _check_range(name, lo, hi):
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"{name} needs 0 < min < max (finite), got min={lo}, max={hi}")


class VPSDE(AbstractSDE):
    r"""Variance-preserving SDE, ``dx = -½ β(t) x dt + √β(t) dw`` (DDPM in continuous time).

    ``β(t) = β_min + t (β_max - β_min)`` on ``[0, T=1]``; with ``B(t) = ∫_0^t β`` the kernel
    is ``α = exp(-B/2)``, ``σ² = 1 - exp(-B)``, and ``λ(t) = -log(e^{B} - 1)``. The prior is
    ``N(0, I)``. Song et al. 2021 use ``(β_min, β_max) = (0.1, 20)``, the limit of Ho et al.'s
    linear schedule ``β_n = β(n/N)/N`` with ``N = 1000``.
    """

    beta_min: float
    beta_max: float
    T: float

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        _check_range("VPSDE", float(beta_min), float(beta_max))
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.T = 1.0

    def beta(self, t: ArrayLike) -> Scalar:
        """``β(t)``."""
        return self.beta_min + jnp.asarray(t) * (self.beta_max - self.beta_min)

    def _integral(self, t):
        t = jnp.asarray(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def drift_coefficient(self, t: ArrayLike) -> Scalar:
        return -0.5 * self.beta(t)

    def diffusion(self, t: ArrayLike) -> Scalar:
        return jnp.sqrt(self.beta(t))

    def marginal(self, t: ArrayLike) -> tuple[Scalar, Scalar]:
        b = self._integral(t)
        return jnp.exp(-0.5 * b), jnp.sqrt(-jnp.expm1(-b))

    def log_snr(self, t: ArrayLike) -> Scalar:
        return -jnp.log(jnp.expm1(self._integral(t)))

    def log_snr_inverse(self, lam: ArrayLike) -> Scalar:
        b = jax.nn.softplus(-jnp.asarray(lam))  # B = log(1 + e^{-λ})
        d = self.beta_max - self.beta_min
        # the positive root of β_min t + ½ d t² = B, written without cancellation
        return 2.0 * b / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * d * b))

    def prior_std(self) -> float:
        return 1.0


class VESDE(AbstractSDE):
    r"""Variance-exploding SDE, ``dx = √(d σ̃²/dt) dw`` with ``σ̃(t) = σ_min (σ_max/σ_min)^t``.

    ``t ∈ [0, T=1]``, ``α = 1``, and the EXACT kernel variance of this SDE started at ``x_0``
    is ``σ(t)² = σ̃(t)² - σ_min²`` (Song et al.'s code uses ``σ̃(t)``, i.e. data already
    blurred by ``σ_min``). ``g(t) = σ̃(t) √(2 log(σ_max/σ_min))``,
    ``λ(t) = -log σ(t)²``. The prior is ``N(0, σ_max² I)``.
    """

    sigma_min: float
    sigma_max: float
    T: float

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        _check_range("VESDE", float(sigma_min), float(sigma_max))
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.T = 1.0

    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def drift_coefficient(self, t: ArrayLike) -> Scalar:
        return jnp.zeros_like(jnp.asarray(t, dtype=jnp.result_type(t, float)))

    def diffusion(self, t: ArrayLike) -> Scalar:
        r = self._log_ratio()
        return self.sigma_min * jnp.exp(jnp.asarray(t) * r) * math.sqrt(2.0 * r)

    def _variance(self, t):
        return self.sigma_min**2 * jnp.expm1(2.0 * jnp.asarray(t) * self._log_ratio())

    def marginal(self, t: ArrayLike) -> tuple[Scalar, Scalar]:
        v = self._variance(t)
        return jnp.ones_like(v), jnp.sqrt(v)

    def log_snr(self, t: ArrayLike) -> Scalar:
        return -jnp.log(self._variance(t))

    def log_snr_inverse(self, lam: ArrayLike) -> Scalar:
        v = jnp.exp(-jnp.asarray(lam))
        return jnp.log1p(v / self.sigma_min**2) / (2.0 * self._log_ratio())

    def prior_std(self) -> float:
        return self.sigma_max
