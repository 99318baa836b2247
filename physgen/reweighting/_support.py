"""Target mass the proposal's samples never reached, measured with independent target draws."""

from __future__ import annotations

import math

import numpy as np

from .._base import Array, Estimate
from ..diagnostics import integrated_autocorrelation_time
from ._weights import _check_log_w


def unsampled_mass(log_w: Array, log_w_reference: Array) -> Estimate:
    r"""``P_p(w(x) > max_i w_i)``: the target mass where the proposal's density is lower, relative
    to the target, than anywhere its ``N`` samples went.

    No statistic of the proposal's own samples sees mass the proposal never puts there (a
    spline flow is the identity outside ``[-B, B]``, so it has almost no mass beyond). Draws of
    the target by another route do: for ``x ~ p``, ``w(x) = p̃(x)/q(x)`` above every sampled
    weight marks a region the ``N`` samples missed, and the fraction of such draws estimates
    its mass. Self-normalised estimates from the ``N`` samples can be off by about that
    fraction (relative), unseen by their error bars when it exceeds ``1/√ESS``.

    ``log_w`` ``(N,)``: the proposal samples' log-weights; ``log_w_reference``: ``log p̃ − log q``
    at target draws, ``(M,)`` independent (data, exact samples) or ``(num_chains, S)`` MCMC
    (autocorrelation-aware error, Geyer's τ). ``+inf`` (the proposal has zero density there)
    counts as unsampled. Returns an ``Estimate`` of the fraction whose standard error uses
    ``(k + ½)/(M + 1)`` for ``k`` hits in ``M`` draws, so that no hit still gives an error
    of order ``1/M``, never 0.
    """
    log_w = _check_log_w(log_w, "unsampled_mass: log_w")
    ref = np.asarray(log_w_reference, dtype=np.float64)
    if ref.ndim not in (1, 2) or ref.size == 0:
        raise ValueError("unsampled_mass: log_w_reference must have shape (M,) or (num_chains, "
                         f"num_samples) with M > 0, got {ref.shape}")
    if np.any(np.isnan(ref)):
        raise ValueError(f"unsampled_mass: log_w_reference has {int(np.sum(np.isnan(ref)))} "
                         f"NaN of {ref.size} entries")
    hits = (ref > float(np.max(np.asarray(log_w)))).astype(np.float64)
    m = hits.size
    tau = 1.0
    if ref.ndim == 2 and ref.shape[1] >= 4 and 0 < hits.sum() < m:
        tau = max(1.0, integrated_autocorrelation_time(hits).tau)
    k = float(hits.sum())
    p = (k + 0.5) / (m + 1)
    return Estimate(k / m, math.sqrt(p * (1 - p) * tau / m))
