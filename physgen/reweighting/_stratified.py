"""Stratified importance sampling: stratum masses from free proposal draws, weights per stratum."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._base import Array


class StratifiedEstimate(NamedTuple):
    """Output of :func:`stratified_estimate` for ``K`` strata (NumPy, float64).

    - ``log_Z`` ``(K,)``: ``log Ẑ_S = log(M_S/M) + log w̄_S`` (``nan`` for a stratum without
      weighted draws), so ``Σ_S Ẑ_S`` estimates ``Z = ∫ p̃``.
    - ``log_Z_cov`` ``(K, K)``: delta-method covariance of the ``log Ẑ_S``.
    - ``mean``: ``Ê_p[f] = Σ_S P̂_S Ê_{p|S}[f]`` with ``P̂_S = Ẑ_S / Σ_T Ẑ_T``;
      ``mean_var`` its delta-method variance; ``f_var`` the estimate of ``Var_p(f)`` (so
      ``f_var / mean_var`` is a variance-equivalent ESS). ``nan`` without ``values``.
    - ``ess`` ``(K,)``: Kish's ESS ``(Σ w)²/Σ w²`` of each stratum's weights (0 for a
      stratum without weighted draws).
    """

    log_Z: np.ndarray
    log_Z_cov: np.ndarray
    mean: float
    mean_var: float
    f_var: float
    ess: np.ndarray

    def free_energy_difference(self, a: int, b: int) -> tuple[float, float]:
        """``ΔF_{b−a} = −log(Ẑ_b/Ẑ_a)`` in kT and its standard error."""
        value = -(self.log_Z[b] - self.log_Z[a])
        c = self.log_Z_cov
        return float(value), float(math.sqrt(c[a, a] + c[b, b] - 2 * c[a, b]))


def stratified_estimate(
    log_w: Array, strata: Array, pool_counts: Array, values: Array | None = None
) -> StratifiedEstimate:
    r"""Stratified importance sampling estimates from a pool of proposal draws.

    ``M`` draws of ``q`` were sorted into ``K`` strata, ``M_S`` in stratum ``S``
    (``pool_counts``); ``n_S`` members of stratum ``S``, taken in draw order (i.i.d. ``q|S``
    given the counts), were weighted with ``w = p̃/q`` (``log_w`` ``(n,)``, ``strata``
    ``(n,)`` integers in ``[0, K)``). Then ``Z_S = ∫_S p̃ = q_S E_{q|S}[w]`` with ``q_S`` the
    stratum's mass under ``q``, estimated by ``Ẑ_S = (M_S/M) w̄_S``, and, with sample means and
    multinomial pool counts, the delta method gives

    ``Cov(log Ẑ_S, log Ẑ_T) = δ_ST Var(w_S)/(n_S w̄_S²) + (δ_ST/q_S − 1)/M``.

    ``values`` ``(n,)`` of a scalar ``f``: ``E_{p|S}[f]`` by the ratio estimate
    ``Σ w f / Σ w`` within each stratum, combined with ``P̂_S = Ẑ_S/Σ_T Ẑ_T``; its variance
    adds the propagated ``Cov(log Ẑ)`` (gradient ``P̂_S (Ê_{p|S}[f] − Ê_p[f])``) to
    ``Σ_S P̂_S² E[(w/w̄_S)² (f − Ê_{p|S}[f])²]/n_S``.

    Host-side NumPy in float64 (the estimator sorts draws into strata by value). Raises
    ``ValueError`` for mismatched shapes or strata out of range and ``FloatingPointError``
    naming the count of non-finite weights. A stratum with one weighted draw gets an
    infinite variance, never an error of 0.
    """
    log_w = np.asarray(log_w, dtype=np.float64)
    lab = np.asarray(strata)
    counts = np.asarray(pool_counts, dtype=np.float64)
    if log_w.ndim != 1 or lab.shape != log_w.shape:
        raise ValueError(
            f"log_w and strata must have the same shape (n,), got {log_w.shape} and "
            f"{lab.shape}"
        )
    if log_w.size == 0:
        raise ValueError("stratified_estimate needs at least one weighted draw")
    num_strata = counts.shape[0] if counts.ndim == 1 else 0
    if num_strata == 0 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(
            f"pool_counts must have shape (K,) and strata be integers, got {counts.shape} and "
            f"{lab.dtype}"
        )
    if lab.size and (lab.min() < 0 or lab.max() >= num_strata):
        raise ValueError(f"strata must lie in [0, {num_strata}), got [{lab.min()}, {lab.max()}]")
    if values is None:
        o = np.zeros(log_w.shape)
    else:
        o = np.asarray(values, dtype=np.float64)
        if o.shape != log_w.shape:
            raise ValueError(f"values must have shape {log_w.shape}, got {o.shape}")
    if not np.all(np.isfinite(log_w)):
        raise FloatingPointError(
            f"stratified_estimate: {int(np.sum(np.isnan(log_w)))} NaN, "
            f"{int(np.sum(log_w == np.inf))} +inf and {int(np.sum(log_w == -np.inf))} -inf of "
            f"{log_w.size} log-weights; every weighted draw needs a finite weight")
    M = counts.sum()
    shift = log_w.max()
    w = np.exp(log_w - shift)
    present = [k for k in range(num_strata) if np.any(lab == k)]
    log_z, var_log_w, o_mean, o_cov = {}, {}, {}, {}
    ess = np.zeros(num_strata)
    for k in present:
        wk, ok = w[lab == k], o[lab == k]
        m = wk.mean()
        ess[k] = wk.sum() ** 2 / np.sum(wk**2)
        log_z[k] = math.log(counts[k] / M) + math.log(m) + shift
        var_log_w[k] = float(wk.var(ddof=1) / (wk.size * m * m)) if wk.size > 1 else math.inf
        o_mean[k] = float(np.sum(wk * ok) / np.sum(wk))
        o_cov[k] = float(np.mean((wk / m) ** 2 * (ok - o_mean[k]) ** 2) / wk.size)
    K = len(present)
    cov = np.zeros((K, K))
    for i, k in enumerate(present):
        for j, m in enumerate(present):
            cov[i, j] = ((1.0 / (counts[k] / M) if k == m else 0.0) - 1.0) / M
        cov[i, i] += var_log_w[k]
    lz = np.array([log_z[k] for k in present])
    p = np.exp(lz - lz.max())
    p /= p.sum()
    om = np.array([o_mean[k] for k in present])
    est = float(p @ om)
    grad = p * (om - est)  # ∂ est / ∂ log Z_S
    var = float(grad @ cov @ grad + np.sum(p**2 * np.array([o_cov[k] for k in present])))
    o2 = np.array([np.sum(w[lab == k] * o[lab == k] ** 2) / np.sum(w[lab == k])
                   for k in present])
    o_var = float(p @ o2 - est**2)

    log_z_all = np.full(num_strata, np.nan)
    log_z_all[present] = lz
    cov_all = np.full((num_strata, num_strata), np.nan)
    cov_all[np.ix_(present, present)] = cov
    if values is None:
        est = var = o_var = math.nan
    return StratifiedEstimate(log_z_all, cov_all, est, var, o_var, ess)
