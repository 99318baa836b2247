"""Time embeddings and time-conditioned vector fields ``v(t, x, condition)`` on one example."""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, ArrayLike, Key, check_int
from ._mlp import MLP


class FourierTimeEmbedding(eqx.Module):
    """Fourier features of a scalar time: ``t -> [sin(ω_k t), cos(ω_k t)]_k``, shape
    ``(embed_dim,)``.

    ``embed_dim`` is even and there are ``embed_dim / 2`` frequencies. Without ``key`` they are
    deterministic and geometrically spaced, ``ω_k = geomspace(min_frequency, max_frequency)``
    (sinusoidal embedding, Vaswani et al. 2017); with ``key`` they are random,
    ``ω_k ~ N(0, scale²)`` (random Fourier features, Tancik et al. 2020). The frequencies are
    fixed: gradients do not flow into them.
    """

    frequencies: Array
    embed_dim: int = eqx.field(static=True)

    def __init__(
        self,
        embed_dim: int = 16,
        *,
        min_frequency: float = 1.0,
        max_frequency: float = 20.0,
        scale: float = 16.0,
        key: Key | None = None,
    ):
        check_int("embed_dim", embed_dim, 2)
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even (sin and cos pairs), got {embed_dim}")
        n = embed_dim // 2
        if key is None:
            if not 0 < min_frequency <= max_frequency:
                raise ValueError(
                    f"need 0 < min_frequency <= max_frequency, got {min_frequency}, {max_frequency}"
                )
            freqs = jnp.exp(jnp.linspace(math.log(min_frequency), math.log(max_frequency), n))
        else:
            if not scale > 0:
                raise ValueError(f"scale must be positive, got {scale}")
            freqs = scale * jax.random.normal(key, (n,))
        self.frequencies = freqs
        self.embed_dim = embed_dim

    def __call__(self, t: ArrayLike) -> Array:
        """``t``: scalar -> ``(embed_dim,)``."""
        t = jnp.asarray(t)
        if t.shape != ():
            raise ValueError(
                f"FourierTimeEmbedding takes a scalar time, got shape {t.shape} "
                "(batch with jax.vmap)"
            )
        dtype = jnp.result_type(t.dtype, float)
        w = jax.lax.stop_gradient(self.frequencies).astype(dtype) * t.astype(dtype)
        return jnp.concatenate([jnp.sin(w), jnp.cos(w)])


class VectorFieldMLP(eqx.Module):
    """A time-conditioned vector field ``v(t, x, c) = MLP([x, emb(t), c])``, ``R^dim -> R^dim``.

    ``emb`` is a :class:`FourierTimeEmbedding` of size ``embed_dim``; ``c`` is a condition of
    ``cond_dim`` entries (any shape of that size; flattened) or absent (``cond_dim=None``).
    ``depth`` hidden layers of ``width`` units with ``activation`` (smooth by default, so the
    field is differentiable in ``x`` as a continuous flow's trace needs). With
    ``zero_init_last=True`` the output layer starts at zero, so a flow built on it starts as
    the identity map. For ONE example: ``t`` scalar, ``x`` of shape ``(dim,)``; batch with
    ``jax.vmap``.
    """

    mlp: MLP
    embedding: FourierTimeEmbedding
    dim: int = eqx.field(static=True)
    cond_dim: int | None = eqx.field(static=True)

    def __init__(
        self,
        key: Key,
        dim: int,
        *,
        width: int = 64,
        depth: int = 3,
        embed_dim: int = 16,
        cond_dim: int | None = None,
        activation: Callable[[Array], Array] = jax.nn.silu,
        zero_init_last: bool = False,
        embedding: FourierTimeEmbedding | None = None,
    ):
        check_int("dim", dim, 1)
        if cond_dim is not None:
            check_int("cond_dim", cond_dim, 1)
        if embedding is None:
            embedding = FourierTimeEmbedding(embed_dim)
        elif not isinstance(embedding, FourierTimeEmbedding):
            raise TypeError(f"embedding must be a FourierTimeEmbedding, got {type(embedding)}")
        in_size = dim + embedding.embed_dim + (cond_dim or 0)
        self.mlp = MLP(in_size, dim, width, depth, key=key, activation=activation,
                       zero_init_last=zero_init_last)
        self.embedding = embedding
        self.dim = dim
        self.cond_dim = cond_dim

    def __call__(self, t: ArrayLike, x: Array, condition: Array | None = None) -> Array:
        """``t`` scalar, ``x``: ``(dim,)``, ``condition``: ``cond_dim`` entries -> ``(dim,)``."""
        x = jnp.asarray(x)
        if x.shape != (self.dim,):
            raise ValueError(
                f"VectorFieldMLP input x has shape {x.shape}, expected ({self.dim},) "
                "(batch with jax.vmap)"
            )
        parts = [x, self.embedding(jnp.asarray(t, dtype=x.dtype)).astype(x.dtype)]
        if self.cond_dim is not None:
            if condition is None:
                raise ValueError(f"VectorFieldMLP needs a condition of {self.cond_dim} entries")
            c = jnp.reshape(jnp.asarray(condition), (-1,))
            if c.shape != (self.cond_dim,):
                raise ValueError(
                    f"condition has {c.shape[0]} entries, expected cond_dim={self.cond_dim}"
                )
            parts.append(c.astype(x.dtype))
        return self.mlp(jnp.concatenate(parts))
