"""``fit``: the one training verb, run as ``lax.scan`` chunks between host callbacks."""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._base import (
    AbstractDataObjective,
    AbstractObjective,
    Array,
    Key,
    check_event_shape,
    check_finite_tree,
    check_int,
)
from ..parallel._mesh import batch_sharding, check_mesh, replicate
from ._checkpoint import load, save
from ._loop import run_chunks


class TrainState(eqx.Module):
    """Everything besides the model that training carries from step to step.

    ``step``: the number of steps taken so far (int32 scalar; step ``t`` uses the key
    ``fold_in(key, t)``); ``opt_state``: the optimiser's state; ``objective_state``: what the
    objective carries (``None`` for most; FAB's replay buffer and AIS step sizes). Returned
    by :func:`fit` and stored in its checkpoints, so that ``fit(..., state=state)`` continues
    a run exactly where it stopped.
    """

    step: Array
    opt_state: Any
    objective_state: Any

    def __init__(self, step, opt_state, objective_state):
        self.step = jnp.asarray(step, jnp.int32)
        self.opt_state = opt_state
        self.objective_state = objective_state


def _all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if eqx.is_inexact_array(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _select(accept, new, old):
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(accept, a, b) if eqx.is_array(a) else a, new, old
    )


class _Optimizer:
    """An optax transformation that equals another when both compute the same update.

    The optimiser is a static argument of the compiled training chunk; optax builds new
    closures for every ``optax.adam(1e-3)``, so comparing by identity would compile the chunk
    anew for each one. Two optimisers are equal here when the jaxprs of their ``update`` (with
    every hyperparameter, as literals or closed-over constants) and the structures of their
    states agree.
    """

    def __init__(self, tx: optax.GradientTransformation, params):
        self.tx = tx
        state = jax.eval_shape(tx.init, params)
        closed = jax.make_jaxpr(tx.update)(params, state, params)
        digest = hashlib.sha256(str(closed.jaxpr).encode())
        for c in closed.consts:
            c = np.asarray(c)
            digest.update(f"{c.dtype}{c.shape}".encode())
            digest.update(c.tobytes())
        self._key = (digest.hexdigest(), jax.tree_util.tree_structure(state))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Optimizer) and self._key == other._key


def _check_data(data, model, objective):
    """``data`` as an array ``(N, *shape)`` or a pair ``(x, condition)`` with one ``N``."""
    name = type(objective).__name__
    if data is None:
        raise ValueError(f"{name} needs data=... (N, *event_shape) or (x, condition)")
    shape = tuple(model.shape)
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"data must be an array or a pair (x, condition), got {len(data)} "
                             "items")
        x, cond = (jnp.asarray(d) for d in data)
        cond_shape = getattr(model, "cond_shape", None)
        if cond_shape is None:
            raise ValueError("data is a pair (x, condition) but the model is unconditional")
        if cond.shape[1:] != tuple(cond_shape) or cond.shape[:1] != x.shape[:1]:
            raise ValueError(f"condition data must have shape ({x.shape[0]}, "
                             f"*{tuple(cond_shape)}), got {cond.shape}")
    else:
        x, cond = jnp.asarray(data), None
    check_event_shape(x, shape, "data")
    if x.ndim != len(shape) + 1:
        raise ValueError(f"data must have shape (N, *{shape}), got {x.shape}")
    for what, a in (("data", x), ("condition data", cond)):
        if a is not None and not bool(jnp.all(jnp.isfinite(a))):
            raise ValueError(f"{what} contains NaN or inf")
    return x if cond is None else (x, cond)


@eqx.filter_jit
def _run_chunk(params, static, state: TrainState, objective, optimizer: _Optimizer, data, key,
               end, bad, chunk_size, batch_size, mesh=None):
    """``chunk_size`` optimiser steps from ``state.step`` in one ``lax.scan``.

    Step ``t`` draws its minibatch with ``k_batch`` and gives ``k_loss`` to the objective,
    ``(k_batch, k_loss) = split(fold_in(key, t))``. Steps at ``t >= end`` (the padding of the
    last chunk) and every step from the first non-finite one on leave the parameters and
    states untouched, so every chunk has the same shape and compiles once. The guard: a step
    is taken only if the loss, the gradients and the new parameters are all finite (a finite
    gradient times a bad learning rate can overflow). With a ``mesh`` the minibatch is split
    over its devices (the parameters arrive replicated) and XLA reduces the gradients.
    """
    tx = optimizer.tx

    def loss_fn(p, k, batch, obj_state, step):
        loss, aux, obj_state = objective.loss(eqx.combine(p, static), k, batch, obj_state, step)
        return loss, (aux, obj_state)

    def body(carry, i):
        params, opt_state, obj_state, bad = carry
        step = state.step + i
        k_batch, k_loss = jax.random.split(jax.random.fold_in(key, step))
        if data is None:
            batch = None
        else:
            n_data = jax.tree_util.tree_leaves(data)[0].shape[0]
            idx = jax.random.randint(k_batch, (batch_size,), 0, n_data)
            if mesh is not None:
                idx = jax.lax.with_sharding_constraint(idx, batch_sharding(mesh))
            batch = jax.tree_util.tree_map(lambda a: a[idx], data)
        (loss, (aux, new_obj_state)), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(
            params, k_loss, batch, obj_state, step
        )
        updates, new_opt_state = tx.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(new_params)
        active = (step < end) & (bad < 0)
        accept = active & finite
        params = _select(accept, new_params, params)
        opt_state = _select(accept, new_opt_state, opt_state)
        obj_state = _select(accept, new_obj_state, obj_state)
        bad = jnp.where(active & ~finite, step, bad)
        return (params, opt_state, obj_state, bad), (loss, aux)

    init = (params, state.opt_state, state.objective_state, bad)
    (params, opt_state, obj_state, bad), (losses, aux) = jax.lax.scan(
        body, init, jnp.arange(chunk_size, dtype=jnp.int32)
    )
    return params, opt_state, obj_state, bad, losses, aux


def _init_key(key: Key) -> Key:
    """The key of ``objective.init_state``: ``fold_in(key, 2³² − 1)``, a number no step uses."""
    return jax.random.fold_in(key, np.uint32(2**32 - 1))


def init_state(key: Key, model, objective: AbstractObjective,
               optimizer: optax.GradientTransformation, *,
               filter_spec: Any = eqx.is_inexact_array) -> TrainState:
    """The :class:`TrainState` at step 0: ``optimizer.init`` of the trained leaves of
    ``model`` and ``objective.init_state(model, key)``."""
    params = eqx.filter(model, filter_spec)
    return TrainState(0, optimizer.init(params), objective.init_state(model, key))


def fit(
    key: Key,
    model,
    objective: AbstractObjective,
    *,
    steps: int,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    data: Array | None = None,
    batch_size: int = 256,
    chunk_size: int = 100,
    filter_spec: Any = eqx.is_inexact_array,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    metadata: dict[str, Any] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    state: TrainState | None = None,
):
    """Minimise ``objective.loss`` over the leaves of ``model`` selected by ``filter_spec``.

    The one training loop of physgen: flows, continuous models, diffusion models, VAEs,
    GANs and FAB all train here, each through its objective (an objective that carries state
    between steps, such as FAB's replay buffer, gets it from ``objective.init_state`` and
    returns it from ``loss``).

    Args:
        key: PRNG key; step ``t`` uses ``fold_in(key, t)``, so the result depends neither on
            ``chunk_size`` nor on where a run was interrupted and resumed.
        model: an Equinox module (a flow, a VAE, a GAN, ...).
        objective: an :class:`~physgen.objectives.AbstractObjective`.
        steps: number of optimiser steps of this call.
        optimizer: an optax transformation (default ``optax.adam(learning_rate)``). A fresh
            but equal transformation (e.g. ``optax.adam(1e-3)`` built anew for every call)
            reuses the compiled training chunk.
        data: ``(N, *event_shape)`` training data for data objectives, or for a conditional
            model the pair ``(x, condition)`` of shapes ``(N, *event_shape)`` and
            ``(N, *cond_shape)``; each step draws a minibatch of ``batch_size`` rows (the same
            rows of both) uniformly with replacement (no short last batch).
        chunk_size: steps per compiled ``lax.scan`` chunk; the progress bar and checkpoint
            are updated between chunks.
        checkpoint: if given, the model and the :class:`TrainState` are saved there
            (atomically) after every chunk, and the last finite model before a non-finite
            loss raises; :func:`load_state` reads them back to resume.
        mesh: a :class:`jax.sharding.Mesh` (e.g. :func:`physgen.parallel.make_mesh`) to
            train data-parallel: the model and the states are replicated on its devices,
            each minibatch (and the samples a data-free objective draws, via
            :func:`physgen.parallel.constrain_batch`) is split over them, and XLA reduces the
            gradients. The random draws are those of one device, so the result equals the
            one-device result up to the order of floating-point sums. ``batch_size`` must be
            divisible by the number of devices; the returned model stays replicated.
        state: a :class:`TrainState` returned by an earlier call (or :func:`load_state`):
            continue from its step with its optimiser and objective states. A run of
            ``2N`` steps equals a run of ``N`` steps continued for ``N`` with the same key.

    Returns:
        ``(model, history, state)``: the trained model; ``history``, a dict of numpy arrays
        of shape ``(steps,)``, ``"loss"`` and every diagnostic the objective reports; and the
        :class:`TrainState` to continue from.

    Raises:
        NonFiniteLossError: the loss, a gradient or the new parameters became NaN/inf; names
            the step and the objective's diagnostics at that step.
    """
    steps = check_int("steps", steps, 1)
    chunk_size = min(check_int("chunk_size", chunk_size, 1), steps)
    if not isinstance(objective, AbstractObjective):
        raise TypeError(f"objective must be an AbstractObjective, got {type(objective)}")
    check_finite_tree(model, "model")
    if isinstance(objective, AbstractDataObjective):
        batch_size = check_int("batch_size", batch_size, 1)
        data = _check_data(data, model, objective)
    elif data is not None:
        raise ValueError(f"{type(objective).__name__} is data-free; do not pass data")
    if mesh is not None:
        check_mesh(mesh, batch_size if data is not None else None, "batch_size")
    tx = optax.adam(learning_rate) if optimizer is None else optimizer
    params, static = eqx.partition(model, filter_spec)
    if state is None:
        state = init_state(_init_key(key), model, objective, tx, filter_spec=filter_spec)
    elif not isinstance(state, TrainState):
        raise TypeError(f"state must be a TrainState (from fit or load_state), got "
                        f"{type(state).__name__}")
    optimizer = _Optimizer(tx, params)
    start = int(state.step)
    end = jnp.asarray(start + steps, jnp.int32)
    # strong int32 (not weak-typed): the chunk's outputs must match its inputs' types, or
    # the second chunk would compile again.
    bad = jnp.asarray(-1, dtype=jnp.int32)
    if mesh is not None:
        params, state, data, key, bad = replicate((params, state, data, key, bad), mesh)
        static = replicate(static, mesh)

    def run_chunk(carry, offset):
        params, state, bad = carry
        # jax.set_mesh acts when called: build it only here, where it is entered.
        with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
            params, opt_state, obj_state, bad, loss, aux = _run_chunk(
                params, static, state, objective, optimizer, data, key, end, bad, chunk_size,
                batch_size, mesh,
            )
        done = jnp.minimum(state.step + chunk_size, end)
        return (params, TrainState(done, opt_state, obj_state), bad), bad, {"loss": loss, **aux}

    def model_of(carry):
        return eqx.combine(carry[0], static)

    def on_failure(model, step):
        if checkpoint is None:
            return ""
        save(checkpoint, model, {**(metadata or {}), "step": step})
        return f"; the last finite model is saved at {checkpoint}"

    def after_chunk(carry, done):
        if checkpoint is not None:
            save(checkpoint, model_of(carry), {**(metadata or {}), "step": start + done},
                 state=carry[1])

    (params, state, _), history = run_chunks(
        run_chunk, (params, state, bad), steps=steps, chunk_size=chunk_size, start=start,
        model_of=model_of, what=f"{type(objective).__name__} loss", desc="fit",
        progress=progress, postfix=lambda d: {"loss": f"{float(np.mean(d['loss'])):.4f}"},
        on_failure=on_failure, after_chunk=after_chunk,
    )
    return eqx.combine(params, static), history, state


def load_state(
    path: str | os.PathLike,
    model,
    objective: AbstractObjective,
    optimizer: optax.GradientTransformation | None = None,
    *,
    learning_rate: float = 1e-3,
    filter_spec: Any = eqx.is_inexact_array,
):
    """Read a checkpoint written by :func:`fit`: ``(model, state)`` to continue with
    ``fit(key, model, objective, ..., state=state)``.

    ``model`` is a model of the structure saved (its values are not used), ``objective`` and
    ``optimizer`` (default ``optax.adam(learning_rate)``) the ones the run trains with: they
    give the structure of the :class:`TrainState` (nothing is evaluated).
    """
    tx = optax.adam(learning_rate) if optimizer is None else optimizer
    like = eqx.filter_eval_shape(
        lambda m, k: init_state(k, m, objective, tx, filter_spec=filter_spec),
        model, jax.random.key(0),
    )
    return load(path, model, state_like=like)
