"""Generator, critic (optionally spectrally normalised) and the GAN that pairs them."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import AbstractImplicitModel, Array, Key, Scalar, Shape, check_single_example
from ..nn import MLP


class Generator(AbstractImplicitModel):
    """``x = G(z)``, ``z ~ N(0, I_latent_dim)``; ``G`` an MLP ``R^latent_dim -> R^data_dim``.

    ``__call__(z)``: ``(latent_dim,)`` -> ``(data_dim,)``. A sampler without density.
    """

    net: MLP
    latent_dim: int = eqx.field(static=True)
    shape: Shape = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        *,
        key: Key,
        width: int = 128,
        depth: int = 3,
        activation: Callable[[Array], Array] = jax.nn.leaky_relu,
    ):
        self.net = MLP(latent_dim, data_dim, width, depth, key=key, activation=activation)
        self.latent_dim = latent_dim
        self.shape = (data_dim,)

    def __call__(self, z: Array) -> Array:
        check_single_example(z, (self.latent_dim,), "Generator: z")
        return self.net(z)

    def _sample(self, key: Key) -> Array:
        return self(jax.random.normal(key, (self.latent_dim,), jnp.result_type(float)))


class Critic(eqx.Module):
    """Discriminator/critic ``D: R^data_dim -> R`` (an MLP); with ``spectral_norm=True`` every
    weight matrix is divided by its largest singular value (Miyato et al. 2018), estimated by
    power iteration whose vectors ``(u, v)`` live in an explicit ``eqx.nn.State``.

    Build with ``critic, state = eqx.nn.make_with_state(Critic)(data_dim, key=...)``.
    ``__call__(x, state, inference=False)``: ``x`` ``(data_dim,)`` -> ``(scalar, state)``;
    ``inference=True`` uses the stored vectors without a power-iteration step. With spectral
    normalisation and a 1-Lipschitz activation, ``D`` is 1-Lipschitz.
    """

    layers: tuple
    activation: Callable[[Array], Array]
    data_dim: int = eqx.field(static=True)
    spectral_norm: bool = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        *,
        key: Key,
        width: int = 128,
        depth: int = 3,
        spectral_norm: bool = False,
        activation: Callable[[Array], Array] = jax.nn.leaky_relu,
    ):
        if depth < 0 or width < 1:
            raise ValueError(f"Critic needs width >= 1 and depth >= 0, got {width}, {depth}")
        sizes = [data_dim] + [width] * depth + [1]
        keys = jax.random.split(key, 2 * len(sizes))
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            lin = eqx.nn.Linear(a, b, key=keys[2 * i])
            if spectral_norm:
                lin = eqx.nn.SpectralNorm(lin, "weight", key=keys[2 * i + 1])
            layers.append(lin)
        self.layers = tuple(layers)
        self.activation = activation
        self.data_dim = data_dim
        self.spectral_norm = spectral_norm

    def __call__(
        self, x: Array, state: eqx.nn.State, *, inference: bool = False
    ) -> tuple[Scalar, eqx.nn.State]:
        check_single_example(x, (self.data_dim,), "Critic: x")
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            if isinstance(layer, eqx.nn.SpectralNorm):
                x, state = layer(x, state, inference=inference)
            else:
                x = layer(x)
            if i < n - 1:
                x = self.activation(x)
        return x[0], state


def critic_batch(
    critic: Critic, x: Array, state: eqx.nn.State, *, inference: bool = False
) -> tuple[Array, eqx.nn.State]:
    """``D`` on a batch ``x`` ``(B, data_dim)`` -> ``((B,), state)``.

    The power iteration does not depend on ``x``: with ``inference=False`` it runs once
    (on the first example) and the whole batch uses the updated vectors.
    """
    if not inference:
        _, state = critic(x[0], state)
    out = jax.vmap(lambda xi: critic(xi, state, inference=True)[0])(x)
    return out, state


def spectral_norm_estimate(layer: eqx.nn.SpectralNorm, state: eqx.nn.State) -> Scalar:
    """The power-iteration estimate ``σ ≈ uᵀ W v`` of the largest singular value of the
    wrapped weight (reshaped to a matrix) held in ``state``."""
    u, v = state.get(layer.uv_index)
    w = getattr(layer.layer, layer.weight_name)
    return jnp.einsum("i,ij,j->", u, w.reshape(w.shape[0], -1), v)


class GAN(AbstractImplicitModel):
    """A generator and its critic (Goodfellow et al. 2014). Samples come from the generator;
    there is no density (:class:`AbstractImplicitModel`). Build with ``GAN(data_dim,
    latent_dim, key=key, ...)`` and train with :func:`physgen.fit` and a GAN loss
    (:class:`NonSaturatingLoss`, :class:`WGANGP`), which keeps the critic's state.
    """

    generator: Generator
    critic: Critic
    shape: Shape = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 2,
        *,
        key: Key,
        width: int = 128,
        depth: int = 3,
        critic_width: int | None = None,
        critic_depth: int | None = None,
        spectral_norm: bool = False,
    ):
        kg, kc = jax.random.split(key)
        self.generator = Generator(data_dim, latent_dim, key=kg, width=width, depth=depth)
        self.critic = Critic(
            data_dim,
            key=kc,
            width=critic_width or width,
            depth=depth if critic_depth is None else critic_depth,
            spectral_norm=spectral_norm,
        )
        self.shape = (data_dim,)

    def _sample(self, key: Key) -> Array:
        return self.generator._sample(key)
