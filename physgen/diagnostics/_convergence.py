"""ESS (bulk, tail) and rank-normalised split R-hat: thin wrappers over ``blackjax.diagnostics``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._base import Array, lazy_import

blackjax = lazy_import("blackjax")  # imported on first use: importing it starts JAX

# jitted once per input shape: far cheaper than BlackJAX's op-by-op dispatch
_ess_bulk = jax.jit(lambda x: blackjax.ess_bulk(x))
_ess_tail = jax.jit(lambda x, prob: blackjax.ess_tail(x, prob=prob), static_argnames="prob")
_ess = jax.jit(lambda x: blackjax.ess(x))
_rhat = jax.jit(lambda x: blackjax.rhat(x))


def _chains(x, what: str, min_ndim: int = 1):
    x = jnp.asarray(x)
    if x.ndim < min_ndim:
        raise ValueError(f"{what}: expected (num_chains, num_samples, ...), got shape {x.shape}")
    if x.ndim == 1:
        x = x[None]
    if x.shape[1] < 4:
        raise ValueError(f"{what}: needs at least 4 samples per chain, got shape {x.shape}")
    return x


def ess_bulk(x: Array) -> Array:
    """Bulk ESS (rank-normalised split chains, Vehtari et al. 2021), ``blackjax.ess_bulk``.

    ``x``: ``(num_chains, num_samples, *extra)`` or ``(num_samples,)`` -> shape ``extra``.
    """
    return _ess_bulk(_chains(x, "ess_bulk"))


def ess_tail(x: Array, prob: float = 0.90) -> Array:
    """Tail ESS: min of the ESS of the 5% / 95% quantile indicators, ``blackjax.ess_tail``.

    ``x``: ``(num_chains, num_samples, *extra)`` or ``(num_samples,)`` -> shape ``extra``.
    """
    return _ess_tail(_chains(x, "ess_tail"), prob=float(prob))


def effective_sample_size(x: Array) -> Array:
    """Classic multi-chain ESS ``MN/τ`` with Geyer's monotone sequence, ``blackjax.ess``."""
    return _ess(_chains(x, "effective_sample_size"))


def rhat(x: Array) -> Array:
    """Rank-normalised split R-hat (max of bulk and folded), ``blackjax.rhat``.

    ``x``: ``(num_chains, num_samples, *extra)`` (a single chain is split in two) -> shape
    ``extra``. Values above ~1.01 signal chains that disagree.
    """
    return _rhat(_chains(x, "rhat"))
