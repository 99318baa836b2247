"""A prioritised replay buffer in fixed-size arrays (jit-compatible), as in FAB."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key, Shape


class ReplayBuffer(eqx.Module):
    r"""Fixed-size circular buffer of weighted samples ``(x_i, log w_i, log q_i)``.

    Fields (all arrays, so the buffer is a PyTree that passes through ``jit``/``scan``):
    ``x`` ``(M, *event_shape)``, ``log_w`` ``(M,)`` (log importance weights of the stored
    samples for the current target), ``log_q`` ``(M,)`` (the model's log density at ``x`` when
    the weight was last set), ``size`` (number of valid entries, ``<= M``) and ``index`` (the
    next slot written; the oldest entries are overwritten first).

    Sampling draws indices with replacement with probability ``w_i / Σ_{j valid} w_j``
    (:meth:`probabilities`). After a model update ``q_old -> q_new`` the weights of samples
    used in that update are corrected for the new AIS target ``p²/q_new`` by
    :meth:`adjust`: ``log w_i += log q_old(x_i) - log q_new(x_i)`` (Midgley et al. 2023,
    Algorithm 2; ``(1 - α)(log q_new - log q_old)`` with ``α = 2``).

    Build an empty buffer with :meth:`empty`; every method returns a new buffer.
    """

    x: Array
    log_w: Array
    log_q: Array
    size: Array
    index: Array

    def __init__(self, x: Array, log_w: Array, log_q: Array, size, index):
        x, log_w, log_q = jnp.asarray(x), jnp.asarray(log_w), jnp.asarray(log_q)
        m = x.shape[0] if x.ndim else 0
        if x.ndim < 1 or log_w.shape != (m,) or log_q.shape != (m,):
            raise ValueError(
                f"ReplayBuffer: x must be (M, *event_shape) and log_w, log_q (M,), got "
                f"{x.shape}, {log_w.shape}, {log_q.shape}"
            )
        self.x = x
        self.log_w = log_w
        self.log_q = log_q
        self.size = jnp.asarray(size, jnp.int32)
        self.index = jnp.asarray(index, jnp.int32)

    @staticmethod
    def empty(max_size: int, event_shape: Shape, dtype=None) -> ReplayBuffer:
        """An empty buffer holding at most ``max_size`` samples of shape ``event_shape``."""
        if int(max_size) < 1:
            raise ValueError(f"max_size must be positive, got {max_size}")
        dtype = jnp.result_type(float) if dtype is None else dtype
        m = int(max_size)
        return ReplayBuffer(
            jnp.zeros((m, *event_shape), dtype),
            jnp.full((m,), -jnp.inf, dtype),
            jnp.zeros((m,), dtype),
            0,
            0,
        )

    @property
    def max_size(self) -> int:
        return self.x.shape[0]

    def valid(self) -> Array:
        """``(M,)`` bool: entries that hold a sample."""
        return jnp.arange(self.max_size) < self.size

    def add(self, x: Array, log_w: Array, log_q: Array) -> ReplayBuffer:
        """Insert ``B <= M`` samples ``x`` ``(B, *event_shape)``, ``log_w``, ``log_q`` ``(B,)`` at
        ``index, index+1, …`` modulo ``M`` (overwriting the oldest once full)."""
        b = x.shape[0]
        if b > self.max_size or x.shape[1:] != self.x.shape[1:]:
            raise ValueError(
                f"ReplayBuffer.add: got samples of shape {x.shape}, expected (B, "
                f"*{self.x.shape[1:]}) with B <= {self.max_size}"
            )
        if log_w.shape != (b,) or log_q.shape != (b,):
            raise ValueError(f"ReplayBuffer.add: log_w and log_q must have shape ({b},)")
        # non-finite weights (e.g. a diverged AIS chain) are stored with zero weight
        log_w = jnp.where(jnp.isfinite(log_w) & jnp.isfinite(log_q), log_w, -jnp.inf)
        log_q = jnp.where(jnp.isfinite(log_q), log_q, 0.0)
        x = jnp.where(jnp.isfinite(x), x, 0.0)
        idx = (self.index + jnp.arange(b)) % self.max_size
        return ReplayBuffer(
            self.x.at[idx].set(x.astype(self.x.dtype)),
            self.log_w.at[idx].set(log_w.astype(self.log_w.dtype)),
            self.log_q.at[idx].set(log_q.astype(self.log_q.dtype)),
            jnp.minimum(self.size + b, self.max_size),
            (self.index + b) % self.max_size,
        )

    def log_probabilities(self) -> Array:
        """``(M,)`` log sampling probabilities ``log w_i - log Σ_{valid} w_j`` (``-inf`` if
        invalid)."""
        lw = jnp.where(self.valid(), self.log_w, -jnp.inf)
        return lw - jax.nn.logsumexp(lw)

    def probabilities(self) -> Array:
        """``(M,)`` sampling probabilities, proportional to the stored weights."""
        return jnp.exp(self.log_probabilities())

    def sample(self, key: Key, batch_size: int) -> tuple[Array, Array, Array, Array]:
        """``batch_size`` draws with replacement, ``P(i) ∝ w_i``.

        Returns ``(x (B, *event_shape), log_w (B,), log_q (B,), indices (B,))``.
        """
        # inverse-CDF sampling: O(M + B log M), not the (B, M) Gumbel noise of categorical
        p = self.probabilities()
        cdf = jnp.cumsum(p)
        u = jax.random.uniform(key, (batch_size,), cdf.dtype) * cdf[-1]
        idx = jnp.searchsorted(cdf, u, side="right")
        idx = jnp.clip(idx, 0, jnp.maximum(self.size - 1, 0))
        return self.x[idx], self.log_w[idx], self.log_q[idx], idx

    def adjust(self, indices: Array, log_w_adjust: Array, log_q_new: Array) -> ReplayBuffer:
        """``log w[i] += log_w_adjust``, ``log q[i] = log_q_new`` at ``indices`` ``(B,)``.

        Repeated indices (draws with replacement) get the same values, so setting them is
        well defined: ``log_w_adjust = log q_old - log q_new`` depends only on the entry.
        """
        log_w_new = self.log_w[indices] + log_w_adjust
        log_w_new = jnp.where(jnp.isfinite(log_w_new), log_w_new, -jnp.inf)
        return ReplayBuffer(
            self.x,
            self.log_w.at[indices].set(log_w_new.astype(self.log_w.dtype)),
            self.log_q.at[indices].set(log_q_new.astype(self.log_q.dtype)),
            self.size,
            self.index,
        )
