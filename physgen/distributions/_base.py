"""The distribution interface: exact ``log_prob`` and ``sample`` broadcasting over leading dims."""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import AbstractExactDensity, Array, Key, Scalar, Shape, check_event_shape


def _check_batch_size(batch_size) -> None:
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")


def _map(fn, args: tuple, batch_size: int | None):
    """``fn`` over the leading axis of every array of ``args``: all at once (``vmap``), or
    ``batch_size`` at a time (``lax.map``: the same values, memory for one batch only).

    All at once, a request too large for the device's memory raises ``MemoryError`` naming
    ``batch_size`` (outside ``jit``; under ``jit`` XLA reports it when the caller runs).
    """
    _check_batch_size(batch_size)
    if batch_size is not None:
        return jax.lax.map(lambda a: fn(*a), args, batch_size=batch_size)
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(args)):
        return jax.vmap(fn)(*args)
    try:  # eager: wait for the result, so that running out of memory is reported here
        return jax.block_until_ready(jax.vmap(fn)(*args))
    except jax.errors.JaxRuntimeError as e:
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        n = jax.tree_util.tree_leaves(args)[0].shape[0]
        reason = str(e).strip().splitlines()[0]
        raise MemoryError(
            f"evaluating {n} examples at once needs more memory than the device has "
            f"({reason}): pass batch_size=, e.g. batch_size={min(65536, max(1, n // 16))}, to "
            f"evaluate that many at a time (the same values, memory for one batch only)"
        ) from None


def _check_sample_shape(sample_shape) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in sample_shape)
    except TypeError:
        raise TypeError(f"sample_shape must be a tuple of ints, got {sample_shape!r}") from None
    if any(s < 0 for s in out) or out != tuple(sample_shape):
        raise ValueError(f"sample_shape must hold non-negative ints, got {sample_shape!r}")
    return out


def _check_real(x, what: str) -> None:
    if jnp.iscomplexobj(x):
        raise ValueError(f"{what} is complex ({jnp.result_type(x)}); densities are defined on "
                         "real inputs: pass the real part, or real and imaginary parts as "
                         "separate coordinates")


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

    Each takes ``batch_size=``: evaluate that many examples at a time (``lax.map``), for
    requests whose intermediate values would not fit in memory at once; the values are the
    same as without it. A request that does not fit without it raises ``MemoryError``
    naming ``batch_size``. Complex inputs are refused (``ValueError``).

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
        _check_real(condition, "condition")

    def log_prob(self, x: Array, condition: Array | None = None, *,
                 batch_size: int | None = None) -> Array:
        """``log p(x)`` for ``x`` of shape ``(*batch, *shape)``; returns shape ``batch``."""
        x = jnp.asarray(x)
        check_event_shape(x, self.shape, "x")
        _check_real(x, "x")
        self._check_condition(condition)
        _check_batch_size(batch_size)
        ndim = len(self.shape)
        if x.ndim == ndim and (condition is None or condition.ndim == len(self.cond_shape)):
            return self._log_prob(x, condition)
        flat, batch_shape = _merge_batch(x, ndim)
        if condition is None or condition.ndim == len(self.cond_shape):
            lp = _map(lambda xi: self._log_prob(xi, condition), (flat,), batch_size)
        else:
            cond = jnp.broadcast_to(condition, batch_shape + tuple(self.cond_shape))
            cflat, _ = _merge_batch(cond, len(self.cond_shape))
            lp = _map(self._log_prob, (flat, cflat), batch_size)
        return lp.reshape(batch_shape)

    def _batched(self, fn, key, sample_shape, condition, batch_size):
        self._check_condition(condition)
        sample_shape = _check_sample_shape(sample_shape)
        _check_batch_size(batch_size)
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
            out = _map(fn, (jax.random.split(key, n), cflat), batch_size)
        else:
            out = _map(lambda k: fn(k, condition), (jax.random.split(key, n),), batch_size)
        return jax.tree_util.tree_map(lambda a: a.reshape(sample_shape + a.shape[1:]), out)

    def sample(self, key: Key, sample_shape: Shape = (), condition: Array | None = None, *,
               batch_size: int | None = None) -> Array:
        """Draw samples of shape ``(*sample_shape, *shape)``."""
        return self._batched(self._sample, key, sample_shape, condition, batch_size)

    def sample_and_log_prob(
        self, key: Key, sample_shape: Shape = (), condition: Array | None = None, *,
        batch_size: int | None = None,
    ) -> tuple[Array, Array]:
        """Samples ``(*sample_shape, *shape)`` and their log densities ``(*sample_shape,)``."""
        return self._batched(self._sample_and_log_prob, key, sample_shape, condition, batch_size)
