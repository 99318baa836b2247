"""Encoder/decoder VAE: Gaussian encoder, Gaussian or Bernoulli decoder, N(0, I) prior."""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key, Scalar, Shape, check_single_example
from ..nn import MLP
from ._base import AbstractLatentVariableModel, diag_gaussian_log_prob


def _bounded_log_var(raw: Array, min_log_var: float | None) -> Array:
    """``min + softplus(raw − min)`` (a smooth floor on the log-variance), or ``raw``."""
    if min_log_var is None:
        return raw
    return min_log_var + jax.nn.softplus(raw - min_log_var)


class GaussianEncoder(eqx.Module):
    """``q(z | x) = N(μ(x), diag exp(ℓ(x)))``: an MLP ``R^data_dim -> R^{2 latent_dim}``.

    ``__call__(x)``: ``x`` of shape ``(data_dim,)`` -> ``(mean, log_var)``, each
    ``(latent_dim,)``. ``depth=0`` makes it affine. The log-variance has a smooth floor
    ``min_log_var`` (``None``: unbounded).
    """

    net: MLP
    data_dim: int = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    min_log_var: float | None = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        *,
        key: Key,
        width: int = 64,
        depth: int = 2,
        activation: Callable[[Array], Array] = jax.nn.gelu,
        min_log_var: float | None = -12.0,
    ):
        self.net = MLP(data_dim, 2 * latent_dim, width, depth, key=key, activation=activation)
        self.data_dim = data_dim
        self.latent_dim = latent_dim
        self.min_log_var = min_log_var

    def __call__(self, x: Array) -> tuple[Array, Array]:
        check_single_example(x, (self.data_dim,), "GaussianEncoder: x")
        out = self.net(x)
        return out[: self.latent_dim], _bounded_log_var(out[self.latent_dim :], self.min_log_var)


class AbstractDecoder(eqx.Module):
    """``p(x | z)`` on one example: ``log_likelihood(x, z)``, ``mean(z)``, ``sample(key, z)``.

    ``x`` of shape ``(data_dim,)``, ``z`` of shape ``(latent_dim,)``.
    """

    data_dim: eqx.AbstractVar[int]
    latent_dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def log_likelihood(self, x: Array, z: Array) -> Scalar: ...

    @abc.abstractmethod
    def mean(self, z: Array) -> Array: ...

    @abc.abstractmethod
    def sample(self, key: Key, z: Array) -> Array: ...


class GaussianDecoder(AbstractDecoder):
    """``p(x | z) = N(m(z), diag exp(s(z)))``, an MLP ``R^latent_dim -> R^{2 data_dim}``.

    ``log p(x|z) = −½ Σ_j [(x_j − m_j)² e^{−s_j} + s_j + log 2π]`` (all constants kept, so
    bounds are in nats and comparable with exact log-likelihoods). The log-variance has a
    smooth floor ``min_log_var`` (``None``: unbounded), which keeps a continuous-data VAE
    from collapsing the decoder variance.
    """

    net: MLP
    data_dim: int = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    min_log_var: float | None = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        *,
        key: Key,
        width: int = 64,
        depth: int = 2,
        activation: Callable[[Array], Array] = jax.nn.gelu,
        min_log_var: float | None = -9.0,
    ):
        self.net = MLP(latent_dim, 2 * data_dim, width, depth, key=key, activation=activation)
        self.data_dim = data_dim
        self.latent_dim = latent_dim
        self.min_log_var = min_log_var

    def _params(self, z):
        check_single_example(z, (self.latent_dim,), "GaussianDecoder: z")
        out = self.net(z)
        return out[: self.data_dim], _bounded_log_var(out[self.data_dim :], self.min_log_var)

    def log_likelihood(self, x: Array, z: Array) -> Scalar:
        m, lv = self._params(z)
        return diag_gaussian_log_prob(x, m, lv)

    def mean(self, z: Array) -> Array:
        return self._params(z)[0]

    def sample(self, key: Key, z: Array) -> Array:
        m, lv = self._params(z)
        return m + jnp.exp(0.5 * lv) * jax.random.normal(key, m.shape, m.dtype)


class BernoulliDecoder(AbstractDecoder):
    """``p(x | z) = Π_j Bernoulli(x_j; sigmoid(l_j(z)))`` for binary data ``x ∈ {0,1}^d``.

    ``log p(x|z) = Σ_j [x_j log σ(l_j) + (1 − x_j) log σ(−l_j)]``.
    """

    net: MLP
    data_dim: int = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        *,
        key: Key,
        width: int = 64,
        depth: int = 2,
        activation: Callable[[Array], Array] = jax.nn.gelu,
    ):
        self.net = MLP(latent_dim, data_dim, width, depth, key=key, activation=activation)
        self.data_dim = data_dim
        self.latent_dim = latent_dim

    def _logits(self, z):
        check_single_example(z, (self.latent_dim,), "BernoulliDecoder: z")
        return self.net(z)

    def log_likelihood(self, x: Array, z: Array) -> Scalar:
        logits = self._logits(z)
        return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits))

    def mean(self, z: Array) -> Array:
        return jax.nn.sigmoid(self._logits(z))

    def sample(self, key: Key, z: Array) -> Array:
        p = self.mean(z)
        return jax.random.bernoulli(key, p).astype(p.dtype)


class VAE(AbstractLatentVariableModel):
    """Variational autoencoder (Kingma & Welling 2014): prior ``N(0, I_latent_dim)``, a
    :class:`GaussianEncoder` ``q(z|x)`` and a decoder ``p(x|z)``
    (:class:`GaussianDecoder` or :class:`BernoulliDecoder`).

    A bound, not a density: see :class:`AbstractLatentVariableModel` (``elbo``, ``iwae``,
    ``log_prob_bound``, ``log_prob_estimate``). ``shape = (data_dim,)``,
    ``latent_shape = (latent_dim,)``.
    """

    encoder: GaussianEncoder
    decoder: AbstractDecoder
    shape: Shape = eqx.field(static=True)
    latent_shape: Shape = eqx.field(static=True)

    def __init__(self, encoder: GaussianEncoder, decoder: AbstractDecoder):
        if not isinstance(encoder, GaussianEncoder):
            raise TypeError(f"encoder must be a GaussianEncoder, got {type(encoder).__name__}")
        if not isinstance(decoder, AbstractDecoder):
            raise TypeError(f"decoder must be an AbstractDecoder, got {type(decoder).__name__}")
        if (encoder.data_dim, encoder.latent_dim) != (decoder.data_dim, decoder.latent_dim):
            raise ValueError(
                f"encoder maps R^{encoder.data_dim} -> R^{encoder.latent_dim} but decoder maps "
                f"R^{decoder.latent_dim} -> R^{decoder.data_dim}: the dimensions must match"
            )
        self.encoder = encoder
        self.decoder = decoder
        self.shape = (encoder.data_dim,)
        self.latent_shape = (encoder.latent_dim,)

    def encode(self, x: Array) -> tuple[Array, Array]:
        """``(mean, log_var)`` of ``q(z | x)``; ``x`` ``(data_dim,)`` -> two ``(latent_dim,)``."""
        return self.encoder(x)

    def log_likelihood(self, x: Array, z: Array) -> Scalar:
        """``log p(x | z)`` for one ``x`` ``(data_dim,)`` and ``z`` ``(latent_dim,)``."""
        return self.decoder.log_likelihood(x, z)

    def decode_mean(self, z: Array) -> Array:
        """``E[x | z]``, ``(latent_dim,)`` -> ``(data_dim,)``."""
        return self.decoder.mean(z)

    def decode_sample(self, key: Key, z: Array) -> Array:
        """``x ~ p(x | z)``, ``(latent_dim,)`` -> ``(data_dim,)``."""
        return self.decoder.sample(key, z)


def gaussian_vae(
    key: Key,
    data_dim: int,
    latent_dim: int,
    *,
    width: int = 64,
    depth: int = 2,
    min_log_var: float | None = -9.0,
) -> VAE:
    """A VAE for continuous data: Gaussian encoder and Gaussian decoder (MLPs)."""
    ke, kd = jax.random.split(key)
    return VAE(
        GaussianEncoder(data_dim, latent_dim, key=ke, width=width, depth=depth),
        GaussianDecoder(
            data_dim, latent_dim, key=kd, width=width, depth=depth, min_log_var=min_log_var
        ),
    )


def bernoulli_vae(
    key: Key, data_dim: int, latent_dim: int, *, width: int = 64, depth: int = 2
) -> VAE:
    """A VAE for binary data: Gaussian encoder and Bernoulli decoder (MLPs)."""
    ke, kd = jax.random.split(key)
    return VAE(
        GaussianEncoder(data_dim, latent_dim, key=ke, width=width, depth=depth),
        BernoulliDecoder(data_dim, latent_dim, key=kd, width=width, depth=depth),
    )


@eqx.filter_jit
def interpolate(model: AbstractLatentVariableModel, x0: Array, x1: Array, num: int = 10) -> Array:
    """Decoder means along the straight line between the posterior means of ``x0`` and
    ``x1``: ``z_t = (1−t) μ(x0) + t μ(x1)``, ``t ∈ [0, 1]``; returns ``(num, *shape)``."""
    m0, _ = model.encode(jnp.asarray(x0))
    m1, _ = model.encode(jnp.asarray(x1))
    t = jnp.linspace(0.0, 1.0, num, dtype=m0.dtype)[:, None]
    return jax.vmap(model.decode_mean)((1 - t) * m0 + t * m1)


@eqx.filter_jit
def latent_traversal(
    model: AbstractLatentVariableModel, x: Array, dim: int, values: Array
) -> Array:
    """Decoder means with latent coordinate ``dim`` of ``μ(x)`` set to each of ``values``
    (``(n,)``), the others held at the posterior mean of ``x``; returns ``(n, *shape)``."""
    m, _ = model.encode(jnp.asarray(x))
    if not 0 <= dim < m.shape[0]:
        raise ValueError(f"dim must be in [0, {m.shape[0]}), got {dim}")
    values = jnp.asarray(values, m.dtype)
    z = jnp.broadcast_to(m, values.shape + m.shape).at[:, dim].set(values)
    return jax.vmap(model.decode_mean)(z)
