r"""Autocorrelation, integrated autocorrelation time (Γ-method) and Monte Carlo errors.

Conventions: ``τ = 1 + 2 Σ_{t≥1} ρ(t)``, so that ``Var(mean) = τ σ²/N`` and ``ESS = N/τ``
(Sokal's and Wolff's ``τ_int = ½ + Σ ρ(t)`` is half of this; an AR(1) process with
coefficient ``ρ`` has ``τ = (1+ρ)/(1-ρ)``). Computed on the host in float64 (numpy).

Several chains ``(num_chains, num_samples)`` are treated as replicas (Wolff 2004, §3):
autocovariances are deviations from the pooled mean, summed over chains,
``Γ(t) = Σ_r Σ_i (a_i^r - ā)(a_{i+t}^r - ā) / (N - R t)``, so disagreement between
chains inflates the error, as it should.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np


def _as_chains(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(
            f"{what}: expected a scalar observable of shape (num_samples,) or "
            f"(num_chains, num_samples), got shape {a.shape}"
        )
    if a.shape[1] < 4:
        raise ValueError(f"{what}: needs at least 4 samples per chain, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: the observable contains NaN or inf")
    return a


def _autocovariance(a: np.ndarray) -> np.ndarray:
    """``Γ(t)``, ``t = 0..S-1``, replicas pooled, by FFT (zero-padded, no wrap-around)."""
    r, s = a.shape
    d = a - a.mean()
    n_fft = 1 << (2 * s - 1).bit_length()
    f = np.fft.rfft(d, n=n_fft, axis=1)
    raw = np.fft.irfft(f * np.conj(f), n=n_fft, axis=1)[:, :s].sum(0)
    return raw / (r * s - r * np.arange(s))


def autocorrelation(x) -> np.ndarray:
    """Normalised autocorrelation ``ρ(t) = Γ(t)/Γ(0)``, ``t = 0..S-1`` (FFT, chains pooled).

    ``x``: ``(num_samples,)`` or ``(num_chains, num_samples)``.
    """
    g = _autocovariance(_as_chains(x, "autocorrelation"))
    return g / g[0] if g[0] > 0 else np.full_like(g, np.nan)


class IntegratedAutocorrelation(NamedTuple):
    """``tau`` (``1 + 2Σρ``), its statistical ``error`` and the summation ``window`` W."""

    tau: float
    error: float
    window: int


def _gamma_method(a: np.ndarray, method: str, S: float, c: float):
    """``(τ, δτ, W, Γ(0))`` with ``Γ(0)`` bias-corrected for the Wolff method."""
    if method not in ("wolff", "sokal"):
        raise ValueError(f"method must be 'wolff' or 'sokal', got {method!r}")
    r, s = a.shape
    n = r * s
    gamma = _autocovariance(a)
    if not gamma[0] > 0:
        return 1.0, 0.0, 0, 0.0
    w_max = max(1, s // 2)
    tau_half = 0.5 + np.cumsum(gamma[1 : w_max + 1]) / gamma[0]  # τ_int(W), W = 1..w_max
    ws = np.arange(1, w_max + 1)
    if method == "wolff":
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            tau_w = np.where(
                tau_half > 0.5,
                S / np.log((2 * tau_half + 1) / (2 * tau_half - 1)),
                1e-300,
            )
            g = np.exp(-ws / tau_w) - tau_w / np.sqrt(ws * n)
        found = np.flatnonzero(g < 0)
    elif method == "sokal":
        found = np.flatnonzero(ws >= c * tau_half)
    else:
        raise ValueError(f"method must be 'wolff' or 'sokal', got {method!r}")
    if found.size:
        w = int(ws[found[0]])
    else:
        warnings.warn(
            f"integrated_autocorrelation_time: no window found up to W={w_max}; the chain is "
            "too short for its autocorrelation and tau is underestimated",
            stacklevel=3,
        )
        w = w_max
    if method == "wolff":
        c_f = gamma[0] + 2 * gamma[1 : w + 1].sum()
        gamma = gamma + c_f / n
    tau = float(1.0 + 2.0 * gamma[1 : w + 1].sum() / gamma[0])
    tau = max(tau, 1.0 / n)
    error = tau * math.sqrt(2.0 * (2 * w + 1) / n)
    return tau, float(error), w, float(gamma[0])


def integrated_autocorrelation_time(x, *, method: str = "wolff", S: float = 1.5,
                                    c: float = 5.0) -> IntegratedAutocorrelation:
    r"""Integrated autocorrelation time ``τ = 1 + 2Σ_{t=1}^{W} ρ(t)`` with an automatic window.

    - ``method="wolff"`` (default): U. Wolff, Comput. Phys. Commun. 156 (2004) 143. With
      ``τ_W = S / ln((2τ_int(W)+1)/(2τ_int(W)-1))`` (``τ_int = τ/2``), ``W`` is the first
      window where ``exp(-W/τ_W) - τ_W/√(WN) < 0``; then the bias of ``Γ`` from the
      estimated mean is corrected, ``Γ(t) += C_F(W)/N``. ``S ≈ 1-2``.
    - ``method="sokal"``: the smallest ``W ≥ c·τ_int(W)`` (Sokal 1997), ``c ≈ 5``.

    Error (Madras & Sokal 1988): ``δτ ≈ τ √(2(2W+1)/N)``, ``N`` the total sample count.
    ``x``: ``(num_samples,)`` or ``(num_chains, num_samples)``. A constant observable gives
    ``τ = 1``, error 0. If no window is found before ``S_chain/2`` a warning is issued and
    the largest window is used.
    """
    a = _as_chains(x, "integrated_autocorrelation_time")
    tau, error, w, _ = _gamma_method(a, method, S, c)
    return IntegratedAutocorrelation(tau, error, w)


def mcse(x, *, method: str = "wolff", S: float = 1.5, c: float = 5.0) -> float:
    r"""Monte Carlo standard error of the mean of a scalar observable, ``√(τ σ² / N)``.

    ``x``: ``(num_samples,)`` or ``(num_chains, num_samples)`` (chains pooled as replicas);
    ``σ² = Γ(0)`` the pooled variance about the pooled mean (bias-corrected for the Wolff
    method) and ``τ`` as in :func:`integrated_autocorrelation_time`. For a vector observable
    apply it per component, e.g. ``mcse(samples[..., i])``.
    """
    a = _as_chains(x, "mcse")
    tau, _, _, gamma0 = _gamma_method(a, method, S, c)
    return float(math.sqrt(gamma0 * tau / a.size))


def mean_and_mcse(x, *, method: str = "wolff", S: float = 1.5,
                  c: float = 5.0) -> tuple[float, float]:
    """``(mean, mcse)`` of a scalar observable, ``(num_samples,)`` or ``(num_chains, S)``."""
    a = _as_chains(x, "mean_and_mcse")
    return float(a.mean()), mcse(a, method=method, S=S, c=c)
