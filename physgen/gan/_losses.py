"""GAN losses: non-saturating (Goodfellow et al. 2014) and WGAN-GP (Gulrajani et al. 2017)."""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, Key, Scalar
from ._modules import Critic, critic_batch


def gradient_penalty(
    critic_fn: Callable[[Array], Scalar], key: Key, real: Array, fake: Array
) -> Scalar:
    """``E[(‖∇_x D(x̂)‖ − 1)²]`` at ``x̂ = ε x_real + (1 − ε) x_fake``, ``ε ~ U[0, 1]`` per
    pair (Gulrajani et al. 2017). ``critic_fn``: one example ``(d,)`` -> scalar;
    ``real``, ``fake``: ``(B, d)``. Zero for every critic with unit gradient norm."""
    if real.shape != fake.shape or real.ndim != 2:
        raise ValueError(f"real and fake must both be (B, d), got {real.shape}, {fake.shape}")
    eps = jax.random.uniform(key, (real.shape[0], 1), real.dtype)
    x_hat = eps * real + (1 - eps) * fake
    g = jax.vmap(jax.grad(critic_fn))(x_hat)
    norm = jnp.sqrt(jnp.sum(g**2, axis=-1) + jnp.finfo(g.dtype).tiny)
    return jnp.mean((norm - 1.0) ** 2)


class AbstractGANLoss(eqx.Module):
    """The two losses of a GAN, minimised alternately by :func:`physgen.gan.fit_gan`.

    ``critic_loss(critic, state, key, real, fake) -> (loss, (state, aux))`` and
    ``generator_loss(critic, state, fake) -> (loss, aux)``; ``real``, ``fake``: ``(B, d)``.
    """

    @abc.abstractmethod
    def critic_loss(self, critic: Critic, state, key: Key, real: Array, fake: Array): ...

    @abc.abstractmethod
    def generator_loss(self, critic: Critic, state, fake: Array): ...


class NonSaturatingLoss(AbstractGANLoss):
    """Critic (discriminator) logits ``D``: ``L_D = E_p[softplus(−D)] + E_G[softplus(D)]``
    (binary cross-entropy, real = 1); generator ``L_G = E_z[softplus(−D(G(z)))]``
    (``−log σ(D)``, the non-saturating form). At the optimum of ``D``, ``L_D = 2 log 2 −
    2 JS(p ‖ p_G)``."""

    def __init__(self):
        pass

    def critic_loss(self, critic, state, key, real, fake):
        d_real, state = critic_batch(critic, real, state)
        d_fake, _ = critic_batch(critic, fake, state, inference=True)
        loss = jnp.mean(jax.nn.softplus(-d_real)) + jnp.mean(jax.nn.softplus(d_fake))
        return loss, (state, {"d_real": jnp.mean(d_real), "d_fake": jnp.mean(d_fake)})

    def generator_loss(self, critic, state, fake):
        d_fake, _ = critic_batch(critic, fake, state, inference=True)
        loss = jnp.mean(jax.nn.softplus(-d_fake))
        return loss, {}


class WGANGP(AbstractGANLoss):
    """Wasserstein GAN with gradient penalty: ``L_D = E_G[D] − E_p[D] + λ GP``, generator
    ``L_G = −E_G[D]``. ``E_p[D] − E_G[D]`` (reported as ``"wasserstein"``) estimates the
    1-Wasserstein distance when ``D`` is near 1-Lipschitz."""

    penalty_weight: float

    def __init__(self, penalty_weight: float = 10.0):
        if penalty_weight < 0:
            raise ValueError(f"penalty_weight must be >= 0, got {penalty_weight}")
        self.penalty_weight = float(penalty_weight)

    def critic_loss(self, critic, state, key, real, fake):
        d_real, state = critic_batch(critic, real, state)
        d_fake, _ = critic_batch(critic, fake, state, inference=True)
        gp = gradient_penalty(lambda x: critic(x, state, inference=True)[0], key, real, fake)
        w = jnp.mean(d_real) - jnp.mean(d_fake)
        return -w + self.penalty_weight * gp, (state, {"wasserstein": w, "gradient_penalty": gp})

    def generator_loss(self, critic, state, fake):
        d_fake, _ = critic_batch(critic, fake, state, inference=True)
        return -jnp.mean(d_fake), {}
