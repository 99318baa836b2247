"""The discrete DDPM noise schedule (Ho et al. 2020; cosine: Nichol & Dhariwal 2021)."""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._base import Array, ArrayLike, Scalar

_KINDS = ("linear", "cosine")


def _cosine_betas(n: int, s: float, max_beta: float) -> np.ndarray:
    steps = np.arange(n + 1, dtype=np.float64) / n
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)


class DDPMSchedule(eqx.Module):
    r"""``N`` noise levels ``β_1..β_N`` of the forward chain ``q(x_n|x_{n-1}) = N(√(1-β_n)
    x_{n-1}, β_n I)``, so ``q(x_n|x_0) = N(√ᾱ_n x_0, (1-ᾱ_n) I)``, ``ᾱ_n = Π_{m≤n}(1-β_m)``.

    ``kind="linear"``: ``β_n`` linear from ``beta_start`` to ``beta_end`` (Ho et al. 2020,
    ``1e-4`` to ``0.02`` for ``N = 1000``); ``kind="cosine"``: ``ᾱ_n = f(n)/f(0)``,
    ``f(n) = cos²((n/N + s)/(1 + s) · π/2)``, ``β_n ≤ max_beta`` (Nichol & Dhariwal 2021).
    Arrays are indexed ``0..N-1`` for steps ``n = 1..N``; step ``n`` is fed to networks as
    the time ``t_n = n/N``, which matches :class:`VPSDE` with ``β_min = N·beta_start`` and
    ``β_max = N·beta_end`` for the linear schedule. Held as float64 numbers, cast to the
    default float on use.
    """

    betas: tuple[float, ...] = eqx.field(static=True)
    kind: str = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)

    def __init__(
        self,
        num_steps: int = 1000,
        kind: str = "linear",
        *,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        cosine_s: float = 0.008,
        max_beta: float = 0.999,
    ):
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if kind == "linear":
            if not 0 < beta_start <= beta_end < 1:
                raise ValueError(
                    f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}"
                )
            betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
        else:
            if not (cosine_s >= 0 and 0 < max_beta < 1):
                raise ValueError(
                    f"need cosine_s >= 0 and 0 < max_beta < 1, got {cosine_s}, {max_beta}"
                )
            betas = _cosine_betas(num_steps, cosine_s, max_beta)
        self.betas = tuple(float(b) for b in betas)
        self.kind = kind
        self.num_steps = num_steps

    def _arr(self, a) -> Array:
        return jnp.asarray(np.asarray(a, dtype=np.float64), dtype=jnp.result_type(float))

    def _np(self) -> np.ndarray:
        return np.asarray(self.betas, dtype=np.float64)

    @property
    def beta(self) -> Array:
        """``(β_1, ..., β_N)``, shape ``(N,)``."""
        return self._arr(self.betas)

    @property
    def alphas(self) -> Array:
        """``α_n = 1 - β_n``, shape ``(N,)``."""
        return self._arr(1.0 - self._np())

    @property
    def alphas_cumprod(self) -> Array:
        """``ᾱ_n = Π_{m≤n} α_m``, shape ``(N,)``."""
        return self._arr(np.cumprod(1.0 - self._np()))

    @property
    def posterior_variance(self) -> Array:
        """``β̃_n = β_n (1 - ᾱ_{n-1}) / (1 - ᾱ_n)`` (``β̃_1 = 0``), shape ``(N,)``."""
        b = self._np()
        abar = np.cumprod(1.0 - b)
        prev = np.concatenate([[1.0], abar[:-1]])
        return self._arr(b * (1.0 - prev) / (1.0 - abar))

    def time(self, n: ArrayLike) -> Scalar:
        """The continuous time ``t_n = n / N`` of step ``n ∈ {1..N}`` given to networks."""
        return jnp.asarray(n, dtype=jnp.result_type(float)) / self.num_steps
