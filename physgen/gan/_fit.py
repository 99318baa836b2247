"""``fit_gan``: alternating critic and generator updates in ``lax.scan`` chunks."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._base import Array, Key, check_event_shape, check_finite_tree
from ..training._fit import default_optimizer
from ..training._loop import run_chunks
from ._losses import AbstractGANLoss
from ._modules import GAN


def _all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _select(accept, new, old):
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(accept, a, b) if eqx.is_array(a) else a, new, old
    )


@eqx.filter_jit
def _run_chunk(
    g_params,
    c_params,
    g_static,
    c_static,
    state,
    g_opt,
    c_opt,
    g_opt_state,
    c_opt_state,
    loss,
    data,
    key,
    start,
    steps,
    bad,
    chunk_size,
    batch_size,
    critic_steps,
):
    """``chunk_size`` GAN steps (each: ``critic_steps`` critic updates, one generator
    update) in one ``lax.scan``; padded or post-NaN steps leave everything untouched."""

    def fake_batch(gp, k):
        gen = eqx.combine(gp, g_static)
        return gen.sample(k, (batch_size,))

    def critic_update(carry, k):
        c_params, c_opt_state, state, g_params = carry
        k_idx, k_z, k_gp = jax.random.split(k, 3)
        real = data[jax.random.randint(k_idx, (batch_size,), 0, data.shape[0])]
        fake = jax.lax.stop_gradient(fake_batch(g_params, k_z))

        def lf(cp):
            return loss.critic_loss(eqx.combine(cp, c_static), state, k_gp, real, fake)

        (lc, (new_state, aux)), grads = eqx.filter_value_and_grad(lf, has_aux=True)(c_params)
        updates, new_opt = c_opt.update(grads, c_opt_state, c_params)
        new_params = eqx.apply_updates(c_params, updates)
        finite = jnp.isfinite(lc) & _all_finite(grads) & _all_finite(new_params)
        return (new_params, new_opt, new_state, g_params), (lc, aux, finite)

    def body(carry, i):
        g_params, c_params, g_opt_state, c_opt_state, state, bad = carry
        step = start + i
        k = jax.random.fold_in(key, step)
        k_c, k_g = jax.random.split(k)
        (c_new, c_opt_new, state_new, _), (lcs, auxes, fins) = jax.lax.scan(
            critic_update,
            (c_params, c_opt_state, state, g_params),
            jax.random.split(k_c, critic_steps),
        )
        critic = eqx.combine(c_new, c_static)

        def lg(gp):
            return loss.generator_loss(critic, state_new, fake_batch(gp, k_g))

        (lgv, _), g_grads = eqx.filter_value_and_grad(lg, has_aux=True)(g_params)
        g_updates, g_opt_new = g_opt.update(g_grads, g_opt_state, g_params)
        g_new = eqx.apply_updates(g_params, g_updates)
        finite = jnp.all(fins) & jnp.isfinite(lgv) & _all_finite(g_grads) & _all_finite(g_new)
        active = (step < steps) & (bad < 0)
        accept = active & finite
        g_params = _select(accept, g_new, g_params)
        c_params = _select(accept, c_new, c_params)
        g_opt_state = _select(accept, g_opt_new, g_opt_state)
        c_opt_state = _select(accept, c_opt_new, c_opt_state)
        state = _select(accept, state_new, state)
        bad = jnp.where(active & ~finite, step, bad)
        aux = {k: v[-1] for k, v in auxes.items()}
        aux["critic_loss"] = lcs[-1]
        aux["generator_loss"] = lgv
        return (g_params, c_params, g_opt_state, c_opt_state, state, bad), aux

    carry, aux = jax.lax.scan(
        body,
        (g_params, c_params, g_opt_state, c_opt_state, state, bad),
        jnp.arange(chunk_size, dtype=jnp.int32),
    )
    return carry, aux


def fit_gan(
    key: Key,
    gan: GAN,
    state: eqx.nn.State,
    loss: AbstractGANLoss,
    *,
    data: Array,
    steps: int,
    critic_steps: int = 1,
    batch_size: int = 256,
    learning_rate: float = 1e-4,
    generator_optimizer: optax.GradientTransformation | None = None,
    critic_optimizer: optax.GradientTransformation | None = None,
    chunk_size: int = 100,
    progress: bool = True,
):
    """Train a :class:`GAN` by alternating updates: per step, ``critic_steps`` critic
    updates minimising ``loss.critic_loss`` (fresh real minibatch and generator samples each),
    then one generator update minimising ``loss.generator_loss``.

    A GAN is a two-player game, not the minimisation of one objective, so this is not
    :func:`physgen.fit`; it keeps fit's shape: step ``t`` uses ``fold_in(key, t)``, steps run
    in compiled ``lax.scan`` chunks of ``chunk_size`` with a progress bar between chunks, and
    a NaN/inf loss or gradient stops training with :class:`physgen.NonFiniteLossError`.
    Default optimisers: ``optax.adam(learning_rate, b1=0.5, b2=0.9)`` for both players.

    Args:
        state: the critic's ``eqx.nn.State`` (spectral-norm power-iteration vectors) from
            ``eqx.nn.make_with_state(GAN)(...)``.
        data: ``(N, *shape)``; minibatches of ``batch_size`` drawn uniformly with replacement.

    Returns:
        ``(gan, state, history)``; ``history`` maps ``"critic_loss"``, ``"generator_loss"``
        and the loss's diagnostics to numpy arrays of shape ``(steps,)``.
    """
    if not isinstance(gan, GAN):
        raise TypeError(f"fit_gan trains a physgen.gan.GAN, got {type(gan).__name__}")
    if not isinstance(loss, AbstractGANLoss):
        raise TypeError(f"loss must be an AbstractGANLoss, got {type(loss).__name__}")
    if steps < 1 or critic_steps < 1:
        raise ValueError(f"steps and critic_steps must be positive, got {steps}, {critic_steps}")
    check_finite_tree(gan, "gan")
    data = jnp.asarray(data)
    check_event_shape(data, gan.shape, "data")
    if data.ndim != len(gan.shape) + 1:
        raise ValueError(f"data must have shape (N, *{tuple(gan.shape)}), got {data.shape}")
    if not bool(jnp.all(jnp.isfinite(data))):
        raise ValueError("data contains NaN or inf")
    g_opt = generator_optimizer or default_optimizer(learning_rate, 0.5, 0.9)
    c_opt = critic_optimizer or default_optimizer(learning_rate, 0.5, 0.9)
    g_params, g_static = eqx.partition(gan.generator, eqx.is_inexact_array)
    c_params, c_static = eqx.partition(gan.critic, eqx.is_inexact_array)
    g_opt_state, c_opt_state = g_opt.init(g_params), c_opt.init(c_params)
    chunk_size = int(min(chunk_size, steps))
    bad = jnp.asarray(-1, dtype=jnp.int32)

    def run_chunk(carry, start):
        g_params, c_params, g_opt_state, c_opt_state, state, bad = carry
        carry, aux = _run_chunk(
            g_params, c_params, g_static, c_static, state, g_opt, c_opt, g_opt_state,
            c_opt_state, loss, data, key, jnp.asarray(start, jnp.int32), steps, bad,
            chunk_size, batch_size, critic_steps,
        )
        return carry, carry[-1], aux

    def gan_of(carry):
        return eqx.tree_at(
            lambda m: (m.generator, m.critic),
            gan,
            (eqx.combine(carry[0], g_static), eqx.combine(carry[1], c_static)),
        )

    carry, history = run_chunks(
        run_chunk, (g_params, c_params, g_opt_state, c_opt_state, state, bad), steps=steps,
        chunk_size=chunk_size, model_of=gan_of, what="GAN loss", desc="fit_gan",
        progress=progress,
        postfix=lambda d: {"critic": f"{float(np.mean(d['critic_loss'])):.4f}",
                           "generator": f"{float(np.mean(d['generator_loss'])):.4f}"},
    )
    return gan_of(carry), carry[4], history
