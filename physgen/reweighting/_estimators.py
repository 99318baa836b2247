"""Self-normalised expectations, ``log Z`` and its lower bound, each with its standard error.

Every estimator needs at least two weighted samples (one gives no error bar) and refuses
NaN or ``+inf`` log-weights, naming their count (:func:`check_log_weights`).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
from jax.scipy.special import logsumexp, softmax

from .._base import Array, Estimate
from ._weights import _check_log_w


def expectation(log_w: Array, f_values: Array) -> Estimate:
    r"""Self-normalised importance-sampling estimate of ``E_p[f]``.

    ``μ̂ = Σ w̄_i f_i`` with ``w̄ = softmax(log_w)``; delta-method variance
    ``Var(μ̂) ≈ Σ w̄_i² (f_i - μ̂)²``. ``log_w`` ``(N,)``, ``f_values`` ``(N, *fshape)`` ->
    ``Estimate`` with fields of shape ``fshape``.
    """
    log_w = _check_log_w(log_w, "expectation: log_w", min_samples=2)
    f = jnp.asarray(f_values)
    if f.ndim < 1 or f.shape[0] != log_w.shape[0]:
        raise ValueError(f"f_values must have shape ({log_w.shape[0]}, ...), got {f.shape}")
    return _expectation(log_w, f)


@eqx.filter_jit
def _expectation(log_w, f):
    f = f.astype(jnp.result_type(f.dtype, log_w.dtype))
    wbar = softmax(log_w)
    mu = jnp.tensordot(wbar, f, axes=1)
    var = jnp.tensordot(wbar**2, (f - mu) ** 2, axes=1)
    return Estimate(mu, jnp.sqrt(var))


def log_Z(log_w: Array) -> Estimate:
    r"""``log Ẑ = log((1/N) Σ w_i)`` (log-mean-exp) with a delta-method standard error.

    ``se(log Ẑ) ≈ se(mean w)/mean w = sqrt(Σ (r_i - 1)² / (N(N-1)))`` with ``r_i = w_i / mean w``.
    ``log Ẑ`` is consistent but biased low by about ``se²/2`` (Jensen). ``(N,)`` -> scalar
    ``Estimate``; the interval is normal on the log scale.
    """
    return _log_Z(_check_log_w(log_w, "log_Z: log_w", min_samples=2))


@eqx.filter_jit
def _log_Z(log_w):
    n = log_w.shape[0]
    lz = logsumexp(log_w) - math.log(n)
    r = jnp.exp(log_w - lz)
    se = jnp.sqrt(jnp.sum((r - 1.0) ** 2) / (float(n) * (n - 1)))
    return Estimate(lz, se)


def log_Z_lower_bound(log_w: Array) -> Estimate:
    """``mean(log w)``: the lower bound ``E_q[log p̃ - log q] = log Z - KL(q‖p) <= log Z``
    (the evidence lower bound of variational inference; minus the reverse-KL loss).

    The standard error is ``std(log w, ddof=1)/sqrt(N)``. ``(N,)`` -> scalar ``Estimate``;
    a weight of zero (``log w = -inf``) gives ``-inf``.
    """
    return _lower_bound(_check_log_w(log_w, "log_Z_lower_bound: log_w", min_samples=2))


@eqx.filter_jit
def _lower_bound(log_w):
    return Estimate(jnp.mean(log_w), jnp.std(log_w, ddof=1) / math.sqrt(log_w.shape[0]))
