"""Free-energy differences between states and free-energy profiles by histogram reweighting."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp, softmax

from .._base import Array, Estimate, Key
from ._bootstrap import bootstrap, percentile_interval
from ._results import FreeEnergyProfile
from ._weights import _check_log_w


def _check_mask(mask, n, what):
    mask = jnp.asarray(mask)
    if mask.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {mask.shape}")
    return mask.astype(bool)


def _delta_f(log_w, in_a, in_b):
    neg_inf = jnp.array(-jnp.inf, log_w.dtype)
    return logsumexp(jnp.where(in_a, log_w, neg_inf)) - logsumexp(jnp.where(in_b, log_w, neg_inf))


def free_energy_difference(log_w: Array, in_A: Array, in_B: Array, *, key: Key | None = None,
                           n_boot: int = 500, level: float = 0.95) -> Estimate:
    r"""``ΔF_{B-A} = -log(P_B / P_A)`` in kT from weighted samples.

    Ratio estimator ``R̂ = Σ w_i 1_B(x_i) / Σ w_i 1_A(x_i)`` (the normaliser cancels), so
    ``ΔF = -log R̂``. Delta-method variance, which includes the covariance of the two sums:
    ``Var(ΔF) ≈ Σ_i w̄_i² (1_B(x_i)/P̂_B - 1_A(x_i)/P̂_A)²`` with ``w̄ = softmax(log_w)``
    (for equal weights and complementary states: ``1/n_A + 1/n_B``).

    ``log_w``, ``in_A``, ``in_B`` (bool) of shape ``(N,)`` -> scalar ``Estimate``. Without
    ``key`` the interval is normal (``±1.96 se``); with ``key`` it is a bootstrap percentile
    interval at ``level`` from ``n_boot`` resamples. An empty state gives ``±inf``.
    """
    log_w = _check_log_w(log_w, "free_energy_difference: log_w", min_samples=2)
    n = log_w.shape[0]
    in_a = _check_mask(in_A, n, "in_A")
    in_b = _check_mask(in_B, n, "in_B")
    return _free_energy_difference(log_w, in_a, in_b, key, n_boot, level)


@eqx.filter_jit
def _free_energy_difference(log_w, in_a, in_b, key, n_boot, level):
    value = _delta_f(log_w, in_a, in_b)
    wbar = softmax(log_w)
    p_a = jnp.sum(jnp.where(in_a, wbar, 0.0))
    p_b = jnp.sum(jnp.where(in_b, wbar, 0.0))
    infl = wbar * (in_b / p_b - in_a / p_a)
    se = jnp.sqrt(jnp.sum(infl**2))
    if key is None:
        return Estimate(value, se)
    draws = bootstrap(key, _delta_f, log_w, in_a, in_b, n_boot=n_boot)
    lo, hi = percentile_interval(draws, level)
    return Estimate(value, se, lo, hi)


def free_energy_profile(log_w: Array, cv_values: Array, bins: Array | int,
                        range: tuple[float, float] | None = None) -> FreeEnergyProfile:
    r"""Histogram reweighting: ``F(bin) = -log(P̂_bin / Δ_bin)`` in kT, with error bands.

    ``P̂_bin = Σ_{i ∈ bin} w̄_i`` (self-normalised over ALL samples) and the delta-method
    ``Var(P̂_bin) ≈ Σ_i w̄_i² (1_bin(x_i) - P̂_bin)²``, so ``se(F) = se(P̂)/P̂``. ``F`` is minus
    the log of the normalised probability density of the collective variable — the same
    normalisation as ``DoubleWell.free_energy_profile`` — with no additive shift.

    ``log_w`` and ``cv_values`` have shape ``(N,)``; ``bins`` is an array of ``n_bins + 1``
    increasing edges, or an int with ``range=(lo, hi)`` (static). Bins are half-open
    ``[e_j, e_{j+1})`` except the last, which is closed (as ``numpy.histogram``); samples outside
    are dropped from the histogram but count in the normalisation. Empty bins: ``F = inf``,
    ``se = nan``.
    """
    log_w = _check_log_w(log_w, "free_energy_profile: log_w", min_samples=2)
    return _free_energy_profile(log_w, cv_values, bins, range)


@eqx.filter_jit
def _free_energy_profile(log_w, cv_values, bins, range):
    n = log_w.shape[0]
    cv = jnp.asarray(cv_values)
    if cv.shape != (n,):
        raise ValueError(f"cv_values must have shape ({n},), got {cv.shape}")
    if isinstance(bins, int):
        if range is None:
            raise ValueError("free_energy_profile: an integer `bins` needs range=(lo, hi)")
        edges = jnp.linspace(range[0], range[1], bins + 1, dtype=log_w.dtype)
    else:
        edges = jnp.asarray(bins, dtype=log_w.dtype)
        if edges.ndim != 1 or edges.shape[0] < 2:
            raise ValueError(f"bins must be an int or a 1-D array of >= 2 edges, got {edges.shape}")
    n_bins = edges.shape[0] - 1
    idx = jnp.searchsorted(edges, cv, side="right") - 1
    idx = jnp.where(cv == edges[-1], n_bins - 1, idx)
    idx = jnp.where((idx < 0) | (idx >= n_bins) | ~jnp.isfinite(cv), n_bins, idx)  # trash bin
    wbar = softmax(log_w)
    p = jax.ops.segment_sum(wbar, idx, num_segments=n_bins + 1)[:n_bins]
    s2_bin = jax.ops.segment_sum(wbar**2, idx, num_segments=n_bins + 1)[:n_bins]
    var_p = jnp.maximum(s2_bin * (1.0 - 2.0 * p) + p**2 * jnp.sum(wbar**2), 0.0)
    se_p = jnp.sqrt(var_p)
    width = jnp.diff(edges)
    empty = p <= 0
    f = jnp.where(empty, jnp.inf, -jnp.log(jnp.where(empty, 1.0, p) / width))
    se_f = jnp.where(empty, jnp.nan, se_p / jnp.where(empty, 1.0, p))
    return FreeEnergyProfile(
        edges=edges,
        centres=0.5 * (edges[1:] + edges[:-1]),
        free_energy=f,
        stderr=se_f,
        probability=p,
        probability_stderr=se_p,
    )
