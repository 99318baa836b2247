"""An autoregressive density with a mixture of Gaussians per conditional (MADE-based)."""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Key, Scalar, Shape
from ..distributions import AbstractDistribution
from ..nn import MaskedMLP

_LOG_2PI = math.log(2.0 * math.pi)


class AutoregressiveMixture(AbstractDistribution):
    r"""``p(x) = Π_i p(x_i | x_{<i})`` with a ``K``-component Gaussian mixture per conditional:

    .. math::
        p(x_i | x_{<i}) = \sum_k π_{ik}\, N(x_i; μ_{ik}, σ_{ik}^2),

    where ``(log π_i, μ_i, σ_i)`` are the outputs of one MADE network
    (:class:`physgen.nn.MaskedMLP`) that see only ``x_{<i}``. ``log_prob`` is exact and one
    network pass; ``sample`` is sequential (``dim`` passes, a ``lax.fori_loop``), the mirror
    image of a MAF (Uria et al. 2013 RNADE; Germain et al. 2015 MADE).
    ``σ = softplus(raw) + min_scale``. ``shape = (dim,)``; unconditional.
    Initial component means are spread over ``[-init_spread, init_spread]``.
    """

    net: MaskedMLP
    dim: int = eqx.field(static=True)
    num_components: int = eqx.field(static=True)
    min_scale: float = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)
    cond_shape: Shape | None = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: Key,
        num_components: int = 8,
        width: int = 64,
        depth: int = 2,
        min_scale: float = 1e-3,
        init_spread: float = 2.0,
        activation: Callable[[Array], Array] = jax.nn.gelu,
    ):
        for name, v in (("dim", dim), ("num_components", num_components)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"AutoregressiveMixture: {name} must be an int >= 1, got {v!r}")
        if not min_scale > 0:
            raise ValueError(f"AutoregressiveMixture: min_scale must be > 0, got {min_scale}")
        k = num_components
        in_deg = np.arange(1, dim + 1)
        out_deg = np.repeat(in_deg, 3 * k)
        net = MaskedMLP(in_deg, out_deg, width, depth, key=key, activation=activation)
        # last layer: small weights, biases giving equal weights, spread means, scale ~ 1/K
        last = net.layers[-1]
        bias = np.zeros((dim, 3, k))
        bias[:, 1, :] = np.linspace(-init_spread, init_spread, k) if k > 1 else 0.0
        scale0 = max(2.0 * init_spread / k, 0.3)
        bias[:, 2, :] = np.log(np.expm1(scale0))
        net = eqx.tree_at(
            lambda m: (m.layers[-1].weight, m.layers[-1].bias),
            net,
            (0.1 * last.weight, jnp.asarray(bias.reshape(-1), last.bias.dtype)),
        )
        self.net = net
        self.dim = dim
        self.num_components = k
        self.min_scale = float(min_scale)
        self.shape = (dim,)
        self.cond_shape = None

    def conditionals(self, x: Array) -> tuple[Array, Array, Array]:
        """``(log π, μ, σ)`` of every conditional ``p(x_i | x_{<i})``, each ``(dim, K)``;
        row ``i`` depends only on ``x_{<i}``. ``x``: ``(dim,)``."""
        out = self.net(x).reshape(self.dim, 3, self.num_components)
        log_pi = jax.nn.log_softmax(out[:, 0], axis=-1)
        return log_pi, out[:, 1], jax.nn.softplus(out[:, 2]) + self.min_scale

    def _log_prob(self, x: Array, condition=None) -> Scalar:
        log_pi, mu, sigma = self.conditionals(x)
        z = (x[:, None] - mu) / sigma
        comp = log_pi - 0.5 * z**2 - jnp.log(sigma) - 0.5 * _LOG_2PI
        return jnp.sum(jax.nn.logsumexp(comp, axis=-1))

    def _sample(self, key: Key, condition=None) -> Array:
        keys = jax.random.split(key, self.dim)
        dtype = self.net.layers[-1].weight.dtype

        def body(i, x):
            log_pi, mu, sigma = self.conditionals(x)
            kc, kn = jax.random.split(keys[i])
            c = jax.random.categorical(kc, log_pi[i])
            xi = mu[i, c] + sigma[i, c] * jax.random.normal(kn, (), dtype)
            return x.at[i].set(xi)

        return jax.lax.fori_loop(0, self.dim, body, jnp.zeros(self.dim, dtype))

    def _sample_and_log_prob(self, key: Key, condition=None):
        x = self._sample(key)
        return x, self._log_prob(x)
