"""``fit_fab``: FAB training with AIS step sizes and a replay buffer carried across steps."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._base import Array, Key, check_finite_tree
from ..objectives._fab import FAB, _ais_diagnostics
from ..objectives._replay_buffer import ReplayBuffer
from ._fit import _tree_all_finite, default_optimizer
from ._loop import run_chunks


class FABState(NamedTuple):
    """Training state besides the model: optimiser state, per-intermediate AIS step sizes
    ``(num_intermediate,)``, the replay buffer (or ``None``) and the cumulative number of
    target energy evaluations (float, exact integers up to 2^53 under x64, 2^24 otherwise)."""

    opt_state: Any
    step_size: Array
    buffer: ReplayBuffer | None
    num_energy_evals: Array


def _select(accept, new, old):
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(accept, a, b) if eqx.is_array(a) else a, new, old
    )


@eqx.filter_jit
def _fill_buffer(params, static, objective: FAB, buffer: ReplayBuffer, step_size, keys):
    """AIS runs (one per key) added to the buffer; returns buffer, step size, evaluations."""
    model = eqx.combine(params, static)

    def body(carry, k):
        buf, eps, evals = carry
        res = objective.ais(model, k, eps)
        log_q = model.log_prob(res.samples)
        buf = buf.add(res.samples, res.log_weights, log_q)
        eps = res.adapted_step_size if objective.adapt else eps
        return (buf, eps, evals + res.num_energy_evals.astype(evals.dtype)), None

    evals0 = jnp.zeros((), step_size.dtype)
    (buffer, step_size, evals), _ = jax.lax.scan(body, (buffer, step_size, evals0), keys)
    return buffer, step_size, evals


@eqx.filter_jit
def _run_chunk(
    params,
    static,
    state: FABState,
    objective: FAB,
    optimizer,
    key,
    start,
    steps,
    bad,
    chunk_size,
    batch_size,
    updates_per_ais,
    w_adjust_clip,
):
    use_buffer = state.buffer is not None

    def grad_step(params, opt_state, loss_fn):
        (loss, aux), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(params)
        updates, new_opt = optimizer.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & _tree_all_finite(grads) & _tree_all_finite(new_params)
        return loss, aux, new_params, new_opt, finite

    def body(carry, i):
        params, st, bad = carry
        step = start + i
        active = (step < steps) & (bad < 0)
        k = jax.random.fold_in(key, step)
        k_ais, k_buf = jax.random.split(k)
        model = eqx.combine(params, static)
        res = objective.ais(model, k_ais, st.step_size)
        eps = res.adapted_step_size if objective.adapt else st.step_size
        evals = st.num_energy_evals + res.num_energy_evals.astype(st.num_energy_evals.dtype)
        if not use_buffer:

            def loss_fn(p):
                m = eqx.combine(p, static)
                return objective.surrogate(m, res.samples, res.log_weights), None

            loss, _, new_params, new_opt, finite = grad_step(params, st.opt_state, loss_fn)
            new_buffer = None
        else:
            log_q_new = model.log_prob(res.samples)
            buffer = st.buffer.add(res.samples, res.log_weights, log_q_new)

            def inner(c, kk):
                p, opt, buf, ok, _ = c
                x, _, log_q_old, idx = buf.sample(kk, batch_size)

                def loss_fn(pp):
                    return objective.buffer_loss(
                        eqx.combine(pp, static), x, log_q_old, w_adjust_clip
                    )

                loss, (adj, log_q), new_p, new_opt, finite = grad_step(p, opt, loss_fn)
                buf = buf.adjust(idx, adj, log_q)
                p = _select(finite, new_p, p)
                opt = _select(finite, new_opt, opt)
                return (p, opt, buf, ok & finite, loss), None

            (new_params, new_opt, new_buffer, finite, loss), _ = jax.lax.scan(
                inner,
                (
                    params,
                    st.opt_state,
                    buffer,
                    jnp.asarray(True),
                    jnp.zeros((), res.log_weights.dtype),
                ),
                jax.random.split(k_buf, updates_per_ais),
            )
        accept = active & finite
        params = _select(accept, new_params, params)
        new_state = FABState(new_opt, eps, new_buffer, evals)
        st = _select(accept, new_state, st) if not use_buffer else _select(active, new_state, st)
        bad = jnp.where(active & ~finite, step, bad)
        aux = _ais_diagnostics(res)
        aux["cumulative_energy_evals"] = evals
        return (params, st, bad), (loss, aux)

    (params, state, bad), (losses, aux) = jax.lax.scan(
        body, (params, state, bad), jnp.arange(chunk_size, dtype=jnp.int32)
    )
    return params, state, bad, losses, aux


def fit_fab(
    key: Key,
    model,
    objective: FAB,
    *,
    steps: int,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 3e-4,
    buffer_size: int | None = None,
    min_buffer_size: int | None = None,
    batch_size: int | None = None,
    updates_per_ais: int = 4,
    w_adjust_clip: float = 10.0,
    chunk_size: int = 50,
    filter_spec: Any = eqx.is_inexact_array,
    progress: bool = True,
    state: FABState | None = None,
):
    r"""Train ``model`` with the :class:`~physgen.objectives.FAB` objective.

    Each of ``steps`` iterations runs AIS from ``q`` to ``p̃²/q`` on ``objective.num_samples``
    chains, starting from the step sizes adapted by the previous iteration. Then

    - without a buffer (``buffer_size=None``, Algorithm 1 of Midgley et al. 2023): one
      gradient step on ``S(θ) = -Σ_i w̄_i log q_θ(x_i)``;
    - with a buffer (Algorithm 2): the AIS samples, their log weights and ``log q`` are added
      to a :class:`~physgen.objectives.ReplayBuffer` of ``buffer_size``; then
      ``updates_per_ais`` gradient steps, each on ``batch_size`` samples drawn ``∝ w`` from
      the buffer, with loss :meth:`FAB.buffer_loss`, after which the drawn samples' weights
      are adjusted (``log w += log q_old - log q_new``). Before training, the buffer is
      filled with ``ceil(min_buffer_size / num_samples)`` AIS runs of the initial model
      (default ``min_buffer_size = buffer_size // 4``); their energy evaluations count.

    Runs in ``lax.scan`` chunks of ``chunk_size`` iterations with a progress bar between
    chunks, like :func:`physgen.fit`; a non-finite loss or gradient raises
    :class:`~physgen.training.NonFiniteLossError` (with a buffer: non-finite inner updates
    are skipped and the iteration is reported as bad).

    ``state``: a :class:`FABState` returned by an earlier call, to continue training (its
    optimiser state, step sizes, buffer and evaluation count; ``buffer_size`` is then
    ignored). Step ``t`` of a continued run uses ``fold_in(key, t)``: pass a new key.

    Returns ``(model, history, state)``: ``history`` holds per iteration ``loss`` and the AIS
    diagnostics (``log_Z_p2_over_q``, ``ais_ess_fraction``, ``ais_acceptance``,
    ``ais_step_size``, ``num_energy_evals``) and ``cumulative_energy_evals`` (including the
    buffer fill); ``state`` is the final :class:`FABState`.
    """
    if not isinstance(objective, FAB):
        raise TypeError(f"fit_fab trains with a FAB objective, got {type(objective).__name__}")
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    check_finite_tree(model, "model")
    optimizer = default_optimizer(learning_rate) if optimizer is None else optimizer
    chunk_size = int(min(chunk_size, steps))
    params, static = eqx.partition(model, filter_spec)
    dtype = jnp.result_type(float)
    if state is not None:
        if not isinstance(state, FABState):
            raise TypeError(f"state must be a FABState, got {type(state).__name__}")
        if state.buffer is not None:
            batch_size = objective.num_samples if batch_size is None else int(batch_size)
    else:
        step_size = jnp.full((objective.num_intermediate,), objective.step_size, dtype)
        k_fill, key = jax.random.split(key)
        buffer, evals = None, jnp.zeros((), dtype)
        if buffer_size is not None:
            if int(buffer_size) < objective.num_samples:
                raise ValueError(
                    f"buffer_size ({buffer_size}) must be >= num_samples ({objective.num_samples})"
                )
            batch_size = objective.num_samples if batch_size is None else int(batch_size)
            min_buffer_size = buffer_size // 4 if min_buffer_size is None else int(min_buffer_size)
            buffer = ReplayBuffer.empty(buffer_size, model.shape, dtype)
            n_fill = max(1, math.ceil(min_buffer_size / objective.num_samples))
            buffer, step_size, evals = _fill_buffer(
                params, static, objective, buffer, step_size, jax.random.split(k_fill, n_fill)
            )
        elif batch_size is not None:
            raise ValueError("batch_size applies to buffer samples: give buffer_size too")
        state = FABState(optimizer.init(params), step_size, buffer, evals)
    bad = jnp.asarray(-1, dtype=jnp.int32)

    def run_chunk(carry, start):
        params, state, bad = carry
        params, state, bad, loss, aux = _run_chunk(
            params, static, state, objective, optimizer, key, jnp.asarray(start, jnp.int32),
            jnp.asarray(steps, jnp.int32), bad, chunk_size, batch_size, updates_per_ais,
            w_adjust_clip,
        )
        return (params, state, bad), bad, {"loss": loss, **aux}

    (params, state, _), history = run_chunks(
        run_chunk, (params, state, bad), steps=steps, chunk_size=chunk_size,
        model_of=lambda carry: eqx.combine(carry[0], static), what="FAB loss",
        desc="fit_fab", progress=progress,
        postfix=lambda d: {"ess": f"{float(np.mean(d['ais_ess_fraction'])):.3f}",
                           "acc": f"{float(np.mean(d['ais_acceptance'])):.2f}"},
    )
    return eqx.combine(params, static), history, state
