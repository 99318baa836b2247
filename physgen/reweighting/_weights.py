"""Log importance weights and the Kish effective sample size."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax.scipy.special import logsumexp, softmax

from .._base import Array, Scalar


def _check_logw(logw) -> Array:
    logw = jnp.asarray(logw)
    if logw.ndim != 1:
        raise ValueError(f"logw must have shape (N,), got {logw.shape}")
    if not jnp.issubdtype(logw.dtype, jnp.floating):
        logw = logw.astype(jnp.result_type(float))
    return logw


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
def normalised_weights(logw: Array) -> Array:
    """Self-normalised weights ``w̄_i = w_i / Σ_j w_j`` (stable softmax), ``(N,)`` -> ``(N,)``."""
    return softmax(_check_logw(logw))


@eqx.filter_jit
def kish_ess(logw: Array) -> Scalar:
    """Kish effective sample size ``(Σ w)² / Σ w²`` in ``[1, N]``, computed in log space."""
    logw = _check_logw(logw)
    return jnp.exp(2.0 * logsumexp(logw) - logsumexp(2.0 * logw))


@eqx.filter_jit
def ess_fraction(logw: Array) -> Scalar:
    """``kish_ess(logw) / N`` in ``[1/N, 1]`` (the "reweighting efficiency")."""
    logw = _check_logw(logw)
    return kish_ess(logw) / logw.shape[0]
