"""Log importance weights and the Kish effective sample size."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax.scipy.special import logsumexp, softmax

from .._base import Array, Scalar


def _check_log_w(log_w) -> Array:
    log_w = jnp.asarray(log_w)
    if log_w.ndim != 1:
        raise ValueError(f"log_w must have shape (N,), got {log_w.shape}")
    if not jnp.issubdtype(log_w.dtype, jnp.floating):
        log_w = log_w.astype(jnp.result_type(float))
    return log_w


@eqx.filter_jit
def log_weights(log_p_unnorm: Array, log_q: Array) -> Array:
    """``log w_i = log p̃(x_i) - log q(x_i)``; both of shape ``(N,)`` -> ``(N,)``.

    ``log p̃`` is the target's unnormalised log density (``-β E``), ``log q`` the proposal's
    exact log density at its own samples.
    """
    log_p_unnorm, log_q = jnp.asarray(log_p_unnorm), jnp.asarray(log_q)
    if log_p_unnorm.shape != log_q.shape or log_q.ndim != 1:
        raise ValueError(
            f"log_p_unnorm and log_q must both have shape (N,), got {log_p_unnorm.shape} and "
            f"{log_q.shape}"
        )
    return log_p_unnorm - log_q


@eqx.filter_jit
def normalised_weights(log_w: Array) -> Array:
    """Self-normalised weights ``w̄_i = w_i / Σ_j w_j`` (stable softmax), ``(N,)`` -> ``(N,)``."""
    return softmax(_check_log_w(log_w))


@eqx.filter_jit
def kish_ess(log_w: Array) -> Scalar:
    """Kish effective sample size ``(Σ w)² / Σ w²`` in ``[1, N]``, computed in log space."""
    log_w = _check_log_w(log_w)
    return jnp.exp(2.0 * logsumexp(log_w) - logsumexp(2.0 * log_w))


@eqx.filter_jit
def ess_fraction(log_w: Array) -> Scalar:
    """``kish_ess(log_w) / N`` in ``[1/N, 1]`` (the "reweighting efficiency")."""
    log_w = _check_log_w(log_w)
    return kish_ess(log_w) / log_w.shape[0]
