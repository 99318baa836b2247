"""The distribution interface: exact ``log_prob`` and ``sample`` broadcasting over leading dims."""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import AbstractExactDensity, Array, Key, Scalar, Shape, check_event_shape


def _merge_batch(x, event_ndim):
    batch_shape = x.shape[: x.ndim - event_ndim]
    return x.reshape((math.prod(batch_shape),) + x.shape[x.ndim - event_ndim :]), batch_shape


class AbstractDistribution(AbstractExactDensity):
    """A probability density ``p(x | condition)`` on ``R^shape`` with exact ``log_prob``.

    Concrete classes implement the single-example methods ``_log_prob(x, condition)``,
    ``_sample(key, condition)`` and ``_sample_and_log_prob(key, condition)``. The public
    methods broadcast over leading dimensions:

    - ``log_prob(x)``: ``x`` of shape ``(*batch, *shape)`` -> ``(*batch,)``.
    - ``sample(key, sample_shape)``: -> ``(*sample_shape, *shape)``.
    - ``sample_and_log_prob(key, sample_shape)``: both at once (cheaper for flows).

    A ``condition`` of shape ``cond_shape`` is shared by all samples; one of shape
    ``(*batch, *cond_shape)`` is matched example by example.
    """

    shape: eqx.AbstractVar[Shape]
    cond_shape: eqx.AbstractVar[Shape | None]

    @abc.abstractmethod
    def _log_prob(self, x: Array, condition: Array | None = None) -> Scalar: ...

    @abc.abstractmethod
    def _sample(self, key: Key, condition: Array | None = None) -> Array: ...

    @abc.abstractmethod
    def _sample_and_log_prob(
        self, key: Key, condition: Array | None = None
    ) -> tuple[Array, Scalar]: ...

    # -- public, broadcasting API -------------------------------------------------------
    def _check_condition(self, condition):
        if self.cond_shape is None:
            if condition is not None:
                raise ValueError("this distribution is unconditional but got a condition")
            return
        if condition is None:
            raise ValueError(f"this distribution needs a condition of shape {self.cond_shape}")
        check_event_shape(condition, self.cond_shape, "condition")

    def log_prob(self, x: Array, condition: Array | None = None) -> Array:
        """``log p(x)`` for ``x`` of shape ``(*batch, *shape)``; returns shape ``batch``."""
        x = jnp.asarray(x)
        check_event_shape(x, self.shape, "x")
        self._check_condition(condition)
        ndim = len(self.shape)
        if x.ndim == ndim and (condition is None or condition.ndim == len(self.cond_shape)):
            return self._log_prob(x, condition)
        flat, batch_shape = _merge_batch(x, ndim)
        if condition is None or condition.ndim == len(self.cond_shape):
            lp = jax.vmap(lambda xi: self._log_prob(xi, condition))(flat)
        else:
            cond = jnp.broadcast_to(condition, batch_shape + tuple(self.cond_shape))
            cflat, _ = _merge_batch(cond, len(self.cond_shape))
            lp = jax.vmap(self._log_prob)(flat, cflat)
        return lp.reshape(batch_shape)

    def _batched(self, fn, key, sample_shape, condition):
        self._check_condition(condition)
        sample_shape = tuple(sample_shape)
        n = math.prod(sample_shape)
        if condition is not None and condition.ndim > len(self.cond_shape):
            lead = condition.shape[: condition.ndim - len(self.cond_shape)]
            if sample_shape[len(sample_shape) - len(lead) :] != lead:
                raise ValueError(
                    f"a batched condition with leading shape {lead} needs sample_shape ending "
                    f"in {lead}, got {sample_shape}"
                )
            cond = jnp.broadcast_to(condition, sample_shape + tuple(self.cond_shape))
            cflat, _ = _merge_batch(cond, len(self.cond_shape))
            keys = jax.random.split(key, n)
            out = jax.vmap(fn)(keys, cflat)
        else:
            keys = jax.random.split(key, n)
            out = jax.vmap(lambda k: fn(k, condition))(keys)
        return jax.tree_util.tree_map(lambda a: a.reshape(sample_shape + a.shape[1:]), out)

    def sample(self, key: Key, sample_shape: Shape = (), condition: Array | None = None) -> Array:
        """Draw samples of shape ``(*sample_shape, *shape)``."""
        return self._batched(self._sample, key, sample_shape, condition)

    def sample_and_log_prob(
        self, key: Key, sample_shape: Shape = (), condition: Array | None = None
    ) -> tuple[Array, Array]:
        """Samples ``(*sample_shape, *shape)`` and their log densities ``(*sample_shape,)``."""
        return self._batched(self._sample_and_log_prob, key, sample_shape, condition)
