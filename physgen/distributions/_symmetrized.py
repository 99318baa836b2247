"""Z2-symmetrised distribution: the equal mixture of a density and its mirror image."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._base import Array, Key, Scalar, Shape
from ._base import AbstractDistribution

_LOG_2 = math.log(2.0)


class Z2Symmetrized(AbstractDistribution):
    r"""``q(x) = ½ [q₀(x) + q₀(−x)]``: invariant under ``x → −x`` whatever ``q₀`` is.

    Sampling draws ``x₀ ~ q₀`` and flips its sign with probability ½; the density is exact,
    ``log q(x) = logaddexp(log q₀(x), log q₀(−x)) − log 2``, at the price of one more
    evaluation of ``q₀`` (an inverse pass of a flow) per sample.

    For a target with two mirror-image modes (the ordered phase of lattice φ⁴, ``M > 0`` and
    ``M < 0``), ``q₀`` only has to learn one of them: a flow from a unimodal base maps most
    of its mass to one sector easily, while a Z2-equivariant flow must stretch the same base
    over both and keeps mass on the barrier between them (Hackett et al., arXiv:2107.00734,
    mix flows over the symmetry group in the same way). Reverse KL is unchanged for a
    Z2-invariant target: ``E_q[log q + βE] = E_{q₀}[log q + βE]``. The sign flip does not
    depend on the parameters, so samples stay reparameterised. A condition, if any, is
    passed to ``q₀`` unchanged (only ``x`` is mirrored).
    """

    distribution: AbstractDistribution
    shape: Shape
    cond_shape: Shape | None

    def __init__(self, distribution: AbstractDistribution):
        if not isinstance(distribution, AbstractDistribution):
            raise TypeError(
                "Z2Symmetrized needs an AbstractDistribution with exact log_prob, got "
                f"{type(distribution).__name__}"
            )
        self.distribution = distribution
        self.shape = distribution.shape
        self.cond_shape = distribution.cond_shape

    def _log_prob(self, x: Array, condition=None) -> Scalar:
        lq, lq_mirror = (self.distribution._log_prob(y, condition) for y in (x, -x))
        return jnp.logaddexp(lq, lq_mirror) - _LOG_2

    def _sign(self, key: Key, dtype) -> Array:
        return jnp.where(jax.random.bernoulli(key), 1, -1).astype(dtype)

    def _sample(self, key: Key, condition=None) -> Array:
        k0, k1 = jax.random.split(key)
        x0 = self.distribution._sample(k0, condition)
        return self._sign(k1, x0.dtype) * x0

    def _sample_and_log_prob(self, key: Key, condition=None):
        k0, k1 = jax.random.split(key)
        x0, lq0 = self.distribution._sample_and_log_prob(k0, condition)
        lq_mirror = self.distribution._log_prob(-x0, condition)
        return self._sign(k1, x0.dtype) * x0, jnp.logaddexp(lq0, lq_mirror) - _LOG_2
