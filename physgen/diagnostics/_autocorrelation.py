r"""Autocorrelation, integrated autocorrelation time and Monte Carlo standard errors.

Conventions: ``τ = 1 + 2 Σ_{t≥1} ρ(t)``, so that ``Var(mean) = τ σ²/N`` and ``ESS = N/τ``
(Sokal's and Wolff's ``τ_int = ½ + Σ ρ(t)`` is half of this; an AR(1) process with
coefficient ``ρ`` has ``τ = (1+ρ)/(1-ρ)``, below 1 for ``ρ < 0``). Computed on the host in
float64 (numpy).

Three ways to cut the sum ``Σ ρ(t)``, whose far lags are noise:

- ``"geyer"`` (default): Geyer's initial monotone sequence (Geyer 1992), as Stan, ArviZ and
  ``blackjax.diagnostics.effective_sample_size`` compute it. Pair sums
  ``P_k = ρ(2k) + ρ(2k+1)`` of a reversible chain are positive and decreasing; the sum stops
  at the first ``P_k ≤ 0`` and the ``P_k`` are made monotone. Negative lags are summed, so
  an oscillating chain (HMC, NUTS: ``ρ(1) < 0``) gets ``τ < 1`` without its error collapsing.
  Several chains ``(R, S)`` follow Stan: ``ρ(t) = 1 - (W - Γ̄(t)) / var⁺`` with ``Γ̄`` the
  within-chain autocovariance averaged over chains, ``W`` the within-chain variance and
  ``var⁺ = (S-1)/S W + B/S`` (``B/S`` the variance of the chain means), so chains that
  disagree inflate ``τ``. ``τ ≥ 1/log10(RS)``, Stan's floor. Chains shorter than
  ``50 τ`` raise a :class:`ShortChainWarning` (emcee's rule): there, ``τ`` and the error are
  underestimated (by ~20% in variance at ``S ≈ 10 τ``).
- ``"wolff"``: Wolff's automatic window (U. Wolff, Comput. Phys. Commun. 156 (2004) 143),
  chains pooled as replicas about the pooled mean. It assumes ``ρ(t) ≥ 0``: with
  ``ρ(1) < 0`` the window stops at ``W = 1``, ``τ = 1 + 2ρ(1)`` can be ~0 and the error
  far too small (a warning says so). Kept for strongly positively correlated chains that
  are short compared with ``τ``, where its bias correction of ``Γ`` leaves a smaller
  underestimate (``tests/test_diagnostics.py`` shows both cases).
- ``"sokal"``: the smallest window ``W ≥ c·τ_int(W)`` (Sokal 1997), same assumption.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np

METHODS = ("geyer", "wolff", "sokal")
MIN_LENGTH_IN_TAU = 50  # chains shorter than 50 τ underestimate τ (emcee's rule, Sokal 1997)


class ShortChainWarning(UserWarning):
    """The chains are too short for their autocorrelation: ``τ`` and the Monte Carlo error
    are underestimated."""


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _as_chains(x, what: str, *, extra: bool = False) -> np.ndarray:
    """``x`` as float64 ``(num_chains, num_samples, *extra)``; ``extra`` dimensions only
    where allowed."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim < 2 or (a.ndim > 2 and not extra):
        shapes = ("(num_samples,), (num_chains, num_samples) or (num_chains, num_samples, "
                  "...)") if extra else "(num_samples,) or (num_chains, num_samples)"
        raise ValueError(f"{what}: expected a {'' if extra else 'scalar '}observable of shape "
                         f"{shapes}, got shape {a.shape}")
    if a.shape[1] < 4:
        raise ValueError(f"{what}: needs at least 4 samples per chain, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: the observable contains NaN or inf "
                         f"({int(np.sum(~np.isfinite(a)))} of {a.size} values)")
    return a


def _chain_autocovariance(d: np.ndarray) -> np.ndarray:
    """``Σ_i d_i d_{i+t}`` along axis 1 for ``t = 0..S-1`` by FFT (zero-padded)."""
    s = d.shape[1]
    n_fft = 1 << (2 * s - 1).bit_length()
    f = np.fft.rfft(d, n=n_fft, axis=1)
    return np.fft.irfft(f * np.conj(f), n=n_fft, axis=1)[:, :s]


def _autocovariance(a: np.ndarray) -> np.ndarray:
    """``Γ(t)``, ``t = 0..S-1``, replicas pooled about the pooled mean (scalar ``(R, S)``)."""
    r, s = a.shape
    raw = _chain_autocovariance(a - a.mean()).sum(0)
    return raw / (r * s - r * np.arange(s))


def autocorrelation(x) -> np.ndarray:
    """Normalised autocorrelation ``ρ(t) = Γ(t)/Γ(0)``, ``t = 0..S-1`` (FFT, chains pooled
    about the pooled mean). ``x``: ``(num_samples,)`` or ``(num_chains, num_samples)``."""
    g = _autocovariance(_as_chains(x, "autocorrelation"))
    return g / g[0] if g[0] > 0 else np.full_like(g, np.nan)


class IntegratedAutocorrelation(NamedTuple):
    """``tau`` (``1 + 2Σρ``), its statistical ``error`` (Madras & Sokal,
    ``τ √(2(2W+1)/N)``) and the last lag ``window`` ``W`` summed. Floats for a scalar
    observable, arrays of shape ``extra`` for ``(num_chains, num_samples, *extra)``."""

    tau: float
    error: float
    window: int


def _too_short(window_max: int, what: str) -> None:
    warnings.warn(
        f"{what}: no window found up to W={window_max}; the chain is too short for its "
        "autocorrelation and tau is underestimated", ShortChainWarning, stacklevel=4)


def _geyer(a: np.ndarray, what: str):
    """``(τ, W, pooled variance)`` by Geyer's initial monotone sequence, per ``extra``
    component of ``a`` ``(R, S, *extra)``; equals ``blackjax``'s ``N / ESS``."""
    r, s = a.shape[:2]
    n = r * s
    means = a.mean(1)
    acov = _chain_autocovariance(a - means[:, None]).mean(0) / s  # (S, *extra)
    w = acov[0] * s / (s - 1)
    var_plus = w * (s - 1) / s + (means.var(0, ddof=1) if r > 1 else 0.0)
    degenerate = ~np.any(a != a[:, :1], axis=(0, 1)) | ~(w > 0)
    var_plus = np.where(degenerate, 1.0, var_plus)
    s_even = s - s % 2
    rho = np.concatenate([np.ones((1,) + acov.shape[1:]), 1.0 - (w - acov[1:s_even]) / var_plus])
    even, odd = rho[0::2], rho[1::2]  # (S/2, *extra) each
    positive = np.logical_and.accumulate(even + odd > 0, axis=0)
    num_pairs = even.shape[0]
    k = np.where(positive.any(0), num_pairs - 1 - np.argmax(positive[::-1], axis=0), 0)
    odd = np.where(positive, odd, 0.0)
    # as Stan and BlackJAX: the even lag after the last positive pair is kept when positive
    # and subtracted once at the end (the index clamped to the last pair, as in BlackJAX)
    keep_even = positive.copy()
    nxt = np.minimum(k + 1, num_pairs - 1)
    inside = k + 1 < num_pairs
    np.put_along_axis(keep_even, nxt[None], np.where(
        inside, np.take_along_axis(even, nxt[None], 0)[0] > 0,
        np.take_along_axis(keep_even, nxt[None], 0)[0])[None], 0)
    even = np.where(keep_even, even, 0.0)
    sums = even + odd
    monotone = np.minimum.accumulate(sums, axis=0)
    lowered = sums > monotone
    even = np.where(lowered, monotone / 2, even)
    odd = np.where(lowered, monotone / 2, odd)
    tau = -1.0 + 2.0 * (even + odd).sum(0) - np.take_along_axis(even, nxt[None], 0)[0]
    tau = np.maximum(tau, 1.0 / math.log10(n))
    tau = np.where(degenerate, 1.0, tau)
    short = (positive.all(0) | (s < MIN_LENGTH_IN_TAU * tau)) & ~degenerate
    if np.any(short):
        warnings.warn(
            f"{what}: chains of {s} samples are shorter than {MIN_LENGTH_IN_TAU} tau "
            f"(tau = {np.max(np.where(short, tau, 0)):.3g}{'' if a.ndim == 2 else ' at most'});"
            " tau and the Monte Carlo error are underestimated", ShortChainWarning, stacklevel=4)
    window = 2 * k + 1
    return tau, window, np.where(degenerate, 0.0, a.reshape((n,) + a.shape[2:]).var(0, ddof=1))


def _gamma_method(a: np.ndarray, method: str, S: float, c: float, what: str):
    """``(τ, W, Γ(0))`` by Wolff's or Sokal's window for a scalar ``(R, S)``, ``Γ(0)``
    bias-corrected for the Wolff method."""
    r, s = a.shape
    n = r * s
    gamma = _autocovariance(a)
    if not gamma[0] > 0:
        return 1.0, 0, 0.0
    if gamma[1] / gamma[0] < -2.0 / math.sqrt(n):
        warnings.warn(
            f"{what}: rho(1) = {gamma[1] / gamma[0]:.2f} < 0; method={method!r} assumes "
            "positive autocorrelation and underestimates the error of an oscillating chain "
            "(HMC, NUTS); use method='geyer'", stacklevel=4)
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
    else:
        found = np.flatnonzero(ws >= c * tau_half)
    if found.size:
        w = int(ws[found[0]])
    else:
        _too_short(w_max, what)
        w = w_max
    if method == "wolff":
        c_f = gamma[0] + 2 * gamma[1 : w + 1].sum()
        gamma = gamma + c_f / n
    tau = float(1.0 + 2.0 * gamma[1 : w + 1].sum() / gamma[0])
    tau = max(tau, 1.0 / n)
    return tau, w, float(gamma[0])


def _tau(a: np.ndarray, method: str, S: float, c: float, what: str):
    """``(τ, W, σ²)`` for ``a`` ``(R, S, *extra)``: floats for a scalar observable."""
    _check_method(method)
    if method == "geyer":
        tau, w, var = _geyer(a, what)
        if a.ndim == 2:
            return float(tau), int(w), float(var)
        return tau, w, var
    if a.ndim > 2:
        raise ValueError(f"{what}: method={method!r} takes a scalar observable of shape "
                         f"(num_samples,) or (num_chains, num_samples), got shape {a.shape}")
    return _gamma_method(a, method, S, c, what)


def integrated_autocorrelation_time(x, *, method: str = "geyer", S: float = 1.5,
                                    c: float = 5.0) -> IntegratedAutocorrelation:
    r"""Integrated autocorrelation time ``τ = 1 + 2Σ_{t=1}^{W} ρ(t)`` (see the module for the
    three ``method`` s; ``S`` is Wolff's parameter, ``c`` Sokal's).

    ``x``: ``(num_samples,)``, ``(num_chains, num_samples)`` or, for ``"geyer"``,
    ``(num_chains, num_samples, *extra)`` (one ``τ`` per component, shape ``extra``).
    Error (Madras & Sokal 1988): ``δτ ≈ τ √(2(2W+1)/N)``, ``N`` the total sample count. A
    constant observable gives ``τ = 1``, error 0. Chains too short for their autocorrelation
    (Geyer: shorter than ``50 τ`` or every pair sum positive; Wolff/Sokal: no window before
    ``S_chain/2``) give a :class:`ShortChainWarning`: ``τ`` is then underestimated.
    """
    a = _as_chains(x, "integrated_autocorrelation_time", extra=method == "geyer")
    tau, w, var = _tau(a, method, S, c, "integrated_autocorrelation_time")
    error = tau * np.sqrt(2.0 * (2 * np.asarray(w) + 1) / (a.shape[0] * a.shape[1]))
    error = np.where(np.asarray(var) > 0, error, 0.0)
    if a.ndim == 2:
        return IntegratedAutocorrelation(float(tau), float(error), int(w))
    return IntegratedAutocorrelation(tau, error, w)


def mcse(x, *, method: str = "geyer", S: float = 1.5, c: float = 5.0):
    r"""Monte Carlo standard error of the mean, ``√(τ σ² / N)``.

    ``x``: ``(num_samples,)``, ``(num_chains, num_samples)`` or, for ``"geyer"``,
    ``(num_chains, num_samples, *extra)`` (one error per component). ``σ²``: the variance of
    all draws pooled (``ddof=1``; Wolff: ``Γ(0)`` about the pooled mean, bias-corrected) and
    ``τ`` as in :func:`integrated_autocorrelation_time`, so for ``"geyer"`` this is ArviZ's
    ``mcse_mean``, ``sd/√ESS``. A float for a scalar observable, else an array of shape
    ``extra``.
    """
    a = _as_chains(x, "mcse", extra=method == "geyer")
    tau, _, var = _tau(a, method, S, c, "mcse")
    se = np.sqrt(np.asarray(var) * tau / (a.shape[0] * a.shape[1]))
    return float(se) if a.ndim == 2 else se


def mean_and_mcse(x, *, method: str = "geyer", S: float = 1.5, c: float = 5.0):
    """``(mean, mcse)`` of an observable, ``(num_samples,)``, ``(num_chains, S)`` or (Geyer)
    ``(num_chains, S, *extra)``, the mean over chains and samples."""
    a = _as_chains(x, "mean_and_mcse", extra=method == "geyer")
    mean = a.mean(axis=(0, 1))
    return (float(mean) if a.ndim == 2 else mean), mcse(a, method=method, S=S, c=c)
