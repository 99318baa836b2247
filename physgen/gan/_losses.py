"""GAN losses: non-saturating (Goodfellow et al. 2014) and WGAN-GP (Gulrajani et al. 2017)."""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import AbstractDataObjective, Array, Key, Scalar, check_event_shape
from ._modules import GAN, Critic, critic_batch


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


class AbstractGANLoss(AbstractDataObjective):
    """A GAN's two losses as one objective of :func:`physgen.fit` on a :class:`GAN`.

    Concrete classes give ``critic_loss(critic, state, key, real, fake) -> (loss, (state,
    aux))`` and ``generator_loss(critic, state, fake) -> (loss, aux)`` (``real``, ``fake``:
    ``(B, d)``). ``fit`` minimises

    ``L = L_D(D, sg(G)) + L_G(sg(D), G)``  (``sg``: stop-gradient),

    whose gradient is ``∇_D L_D`` for the critic's parameters and ``∇_G L_G`` for the
    generator's: one step updates both players simultaneously, from the same parameters,
    each down its own loss. The printed ``loss`` is that sum; ``critic_loss`` and
    ``generator_loss`` are reported apart. To give the players different optimisers (e.g.
    the two-time-scale rule, a faster critic), pass ``optax.multi_transform({"critic": ...,
    "generator": ...}, physgen.gan.player_labels)`` as ``fit``'s optimiser.

    The objective's state is the critic's ``eqx.nn.State`` (spectral-norm vectors), made by
    ``init_state`` from a GAN built with ``GAN(...)``; ``fit`` returns it as
    ``state.objective_state``. Each step draws ``B`` generator samples for the ``B`` data
    rows of the minibatch.
    """

    @abc.abstractmethod
    def critic_loss(self, critic: Critic, state, key: Key, real: Array, fake: Array): ...

    @abc.abstractmethod
    def generator_loss(self, critic: Critic, state, fake: Array): ...

    def init_state(self, model, key: Key) -> eqx.nn.State:
        if not isinstance(model, GAN):
            raise TypeError(f"{type(self).__name__} trains a GAN, got {type(model).__name__}")
        try:
            return eqx.nn.State(model)
        except ValueError:
            raise ValueError(
                f"{type(self).__name__} makes the critic's state itself: build the model with "
                "GAN(...), not eqx.nn.make_with_state(GAN)(...)"
            ) from None

    def loss(self, model, key: Key, batch, state, step):
        if batch is None or isinstance(batch, (tuple, list)):
            raise ValueError(f"{type(self).__name__} needs unconditional data: pass data=... "
                             "(N, d) to fit")
        check_event_shape(batch, model.shape, "data batch")
        # an eqx.nn.State may be used once; fit keeps the one it passes in (to undo a bad step)
        state = jax.tree_util.tree_map(lambda a: a, state)
        k_z, k_c = jax.random.split(key)
        fake = model.generator.sample(k_z, (batch.shape[0],)).astype(batch.dtype)
        lc, (state, aux) = self.critic_loss(model.critic, state, k_c, batch,
                                            jax.lax.stop_gradient(fake))
        params, static = eqx.partition(model.critic, eqx.is_inexact_array)
        frozen = eqx.combine(jax.lax.stop_gradient(params), static)
        lg, aux_g = self.generator_loss(frozen, state, fake)
        return lc + lg, {"critic_loss": lc, "generator_loss": lg, **aux, **aux_g}, state


def player_labels(params) -> GAN:
    """``"critic"`` on every leaf of a GAN's critic and ``"generator"`` on the others: the
    ``param_labels`` of ``optax.multi_transform`` for separate optimisers per player."""
    labels = jax.tree_util.tree_map(lambda _: "generator", params)
    return eqx.tree_at(lambda g: g.critic, labels,
                       jax.tree_util.tree_map(lambda _: "critic", params.critic))


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
