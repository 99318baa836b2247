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


class DiagonalGaussianNet(eqx.Module):
    """``u ↦ (mean, log_var)`` of a diagonal Gaussian: an MLP ``R^in_dim -> R^{2 out_dim}``.

    ``__call__(u)``: ``u`` of shape ``(in_dim,)`` -> ``(mean, log_var)``, each ``(out_dim,)``.
    ``depth=0`` makes it affine. The log-variance has a smooth floor ``min_log_var``,
    ``min + softplus(raw − min)`` (``None``: unbounded). The VAE's encoder ``q(z | x)``
    (``in_dim = data_dim``) and the Gaussian decoder's ``p(x | z)``.
    """

    net: MLP
    in_dim: int = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)
    min_log_var: float | None = eqx.field(static=True)

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        key: Key,
        width: int = 64,
        depth: int = 2,
        activation: Callable[[Array], Array] = jax.nn.gelu,
        min_log_var: float | None = -12.0,
    ):
        self.net = MLP(in_dim, 2 * out_dim, width, depth, key=key, activation=activation)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.min_log_var = min_log_var

    def __call__(self, u: Array) -> tuple[Array, Array]:
        check_single_example(u, (self.in_dim,), "DiagonalGaussianNet: input")
        out = self.net(u)
        raw = out[self.out_dim :]
        if self.min_log_var is not None:
            raw = self.min_log_var + jax.nn.softplus(raw - self.min_log_var)
        return out[: self.out_dim], raw


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
    """``p(x | z) = N(m(z), diag exp(s(z)))`` with ``(m, s)`` a :class:`DiagonalGaussianNet`
    ``R^latent_dim -> R^data_dim``.

    ``log p(x|z) = −½ Σ_j [(x_j − m_j)² e^{−s_j} + s_j + log 2π]`` (all constants kept, so
    bounds are in nats and comparable with exact log-likelihoods). The log-variance has a
    smooth floor ``min_log_var`` (``None``: unbounded), which keeps a continuous-data VAE
    from collapsing the decoder variance.
    """

    net: DiagonalGaussianNet
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
        min_log_var: float | None = -9.0,
    ):
        self.net = DiagonalGaussianNet(latent_dim, data_dim, key=key, width=width, depth=depth,
                                       activation=activation, min_log_var=min_log_var)
        self.data_dim = data_dim
        self.latent_dim = latent_dim

    def log_likelihood(self, x: Array, z: Array) -> Scalar:
        m, lv = self.net(z)
        return diag_gaussian_log_prob(x, m, lv)

    def mean(self, z: Array) -> Array:
        return self.net(z)[0]

    def sample(self, key: Key, z: Array) -> Array:
        m, lv = self.net(z)
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
    :class:`DiagonalGaussianNet` encoder ``q(z|x)`` and a decoder ``p(x|z)``
    (:class:`GaussianDecoder` or :class:`BernoulliDecoder`).

    A bound, not a density: see :class:`AbstractLatentVariableModel` (``elbo``, ``iwae``,
    ``log_prob_bound``, ``log_prob_estimate``). ``shape = (data_dim,)``,
    ``latent_shape = (latent_dim,)``.
    """

    encoder: DiagonalGaussianNet
    decoder: AbstractDecoder
    shape: Shape = eqx.field(static=True)
    latent_shape: Shape = eqx.field(static=True)

    def __init__(self, encoder: DiagonalGaussianNet, decoder: AbstractDecoder):
        if not isinstance(encoder, DiagonalGaussianNet):
            raise TypeError(
                f"encoder must be a DiagonalGaussianNet, got {type(encoder).__name__}")
        if not isinstance(decoder, AbstractDecoder):
            raise TypeError(f"decoder must be an AbstractDecoder, got {type(decoder).__name__}")
        if (encoder.in_dim, encoder.out_dim) != (decoder.data_dim, decoder.latent_dim):
            raise ValueError(
                f"encoder maps R^{encoder.in_dim} -> R^{encoder.out_dim} but decoder maps "
                f"R^{decoder.latent_dim} -> R^{decoder.data_dim}: the dimensions must match"
            )
        self.encoder = encoder
        self.decoder = decoder
        self.shape = (encoder.in_dim,)
        self.latent_shape = (encoder.out_dim,)

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
        DiagonalGaussianNet(data_dim, latent_dim, key=ke, width=width, depth=depth),
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
        DiagonalGaussianNet(data_dim, latent_dim, key=ke, width=width, depth=depth),
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
