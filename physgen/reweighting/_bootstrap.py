"""Nonparametric bootstrap with an explicit key."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key

_MAX_VMAP_ELEMENTS = 2**24  # resampled indices held at once before chunking with lax.map


@eqx.filter_jit
def bootstrap(key: Key, statistic: Callable, *arrays: Array, n_boot: int = 500,
              batch_size: int = 64):
    """Bootstrap replicates of ``statistic(*arrays)``, resampling the leading axis jointly.

    Each replicate draws ``N`` indices with replacement (``N`` = common leading length of
    ``arrays``) and evaluates ``statistic`` on the resampled arrays. Replicates are vmapped all
    at once while ``n_boot · N <= 2^24``, else in chunks of ``batch_size`` (``jax.lax.map``),
    so memory stays ``O(min(n_boot, batch_size) · N)``. Jitted (``eqx.filter_jit``) with
    ``statistic``, ``n_boot`` and ``batch_size`` static: pass the same function object to reuse
    the compilation.
    Returns the statistic's output pytree with a leading axis of length ``n_boot``.
    """
    if not arrays:
        raise ValueError("bootstrap needs at least one array to resample")
    n = jnp.shape(arrays[0])[0]
    for a in arrays:
        if jnp.ndim(a) < 1 or jnp.shape(a)[0] != n:
            raise ValueError(
                f"bootstrap: all arrays need the same leading length {n}, got shape {jnp.shape(a)}"
            )
    arrays = tuple(jnp.asarray(a) for a in arrays)

    def resampled(idx):
        return statistic(*(a[idx] for a in arrays))

    if n_boot * n <= _MAX_VMAP_ELEMENTS:
        return jax.vmap(resampled)(jax.random.randint(key, (n_boot, n), 0, n))
    keys = jax.random.split(key, n_boot)
    return jax.lax.map(lambda k: resampled(jax.random.randint(k, (n,), 0, n)), keys,
                       batch_size=min(batch_size, n_boot))


@eqx.filter_jit
def percentile_interval(draws: Array, level: float = 0.95) -> tuple[Array, Array]:
    """Percentile interval ``(q_{(1-level)/2}, q_{(1+level)/2})`` over the leading axis."""
    alpha = 0.5 * (1.0 - level)
    return jnp.quantile(draws, alpha, axis=0), jnp.quantile(draws, 1.0 - alpha, axis=0)
