"""``fit``: the one training verb, run as ``lax.scan`` chunks between host callbacks."""

from __future__ import annotations

import contextlib
import functools
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
)
from ..parallel._mesh import batch_sharding, replicate
from ._checkpoint import save
from ._loop import run_chunks


def _tree_all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


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


@functools.lru_cache(maxsize=32)
def default_optimizer(learning_rate: float, b1: float = 0.9, b2: float = 0.999):
    """``optax.adam(learning_rate, b1, b2)``, one object per setting: the optimiser is a
    static argument of the compiled training chunk, so a fresh ``optax.adam`` per call of
    ``fit`` would recompile it every time."""
    return optax.adam(learning_rate, b1=b1, b2=b2)


@eqx.filter_jit
def _run_chunk(
    params,
    static,
    opt_state,
    objective,
    optimizer,
    data,
    key,
    start,
    steps,
    bad,
    chunk_size,
    batch_size,
    mesh=None,
):
    """``chunk_size`` optimiser steps in one ``lax.scan``.

    Steps at index ``>= steps`` (the padding of the last chunk) and all steps after the first
    non-finite loss leave the parameters untouched, so every chunk has the same shape and the
    function compiles once. With a ``mesh`` the minibatch is split over its devices (the
    parameters arrive replicated); XLA reduces the gradients.
    """

    def loss_fn(p, k, batch):
        return objective.loss(eqx.combine(p, static), k, batch)

    def body(carry, i):
        params, opt_state, bad = carry
        step = start + i
        k = jax.random.fold_in(key, step)
        k_batch, k_loss = jax.random.split(k)
        if data is None:
            batch = None
        else:
            n_data = jax.tree_util.tree_leaves(data)[0].shape[0]
            idx = jax.random.randint(k_batch, (batch_size,), 0, n_data)
            if mesh is not None:
                idx = jax.lax.with_sharding_constraint(idx, batch_sharding(mesh))
            batch = jax.tree_util.tree_map(lambda a: a[idx], data)
        (loss, aux), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(params, k_loss, batch)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        # the new parameters too: a finite gradient times a bad learning rate is NaN
        finite = jnp.isfinite(loss) & _tree_all_finite(grads) & _tree_all_finite(new_params)
        active = (step < steps) & (bad < 0)
        accept = active & finite
        params = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new_params, params)
        opt_state = jax.tree_util.tree_map(
            lambda a, b: jnp.where(accept, a, b) if eqx.is_array(a) else a,
            new_opt_state,
            opt_state,
        )
        bad = jnp.where(active & ~finite, step, bad)
        return (params, opt_state, bad), (loss, aux)

    (params, opt_state, bad), (losses, aux) = jax.lax.scan(
        body, (params, opt_state, bad), jnp.arange(chunk_size, dtype=jnp.int32)
    )
    return params, opt_state, bad, losses, aux


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
):
    """Minimise ``objective.loss(model, key, batch)`` over the inexact arrays of ``model``.

    Args:
        key: PRNG key; step ``t`` uses ``fold_in(key, t)``, so the result does not depend on
            ``chunk_size``.
        model: an Equinox module (e.g. a flow); leaves selected by ``filter_spec`` are trained.
        objective: an :class:`AbstractObjective`.
        steps: number of optimiser steps.
        optimizer: an optax transformation (default ``optax.adam(learning_rate)``).
        data: ``(N, *event_shape)`` training data for data objectives, or for a conditional
            model the pair ``(x, condition)`` of shapes ``(N, *event_shape)`` and
            ``(N, *cond_shape)``; each step draws a minibatch of ``batch_size`` rows (the same
            rows of both) uniformly with replacement (no short last batch).
        chunk_size: steps per compiled ``lax.scan`` chunk; the progress bar and checkpoint
            are updated between chunks.
        checkpoint: if given, the model is saved there (atomically) after every chunk, and
            the last finite model is saved there before a non-finite loss raises.
        mesh: a :class:`jax.sharding.Mesh` (e.g. :func:`physgen.parallel.make_mesh`) to
            train data-parallel: the model and optimiser state are replicated on its devices,
            each minibatch (and the samples a data-free objective draws, via
            :func:`physgen.parallel.constrain_batch`) is split over them, and XLA reduces the
            gradients. The random draws are those of one device, so the result equals the
            one-device result up to the order of floating-point sums. ``batch_size`` must be
            divisible by the number of devices; the returned model stays replicated.

    Returns:
        ``(model, history)`` with ``history`` a dict of numpy arrays of shape ``(steps,)``:
        ``"loss"`` and every diagnostic the objective reports.

    Raises:
        NonFiniteLossError: the loss or a gradient became NaN/inf; names the step and the
            objective's diagnostics (e.g. the energies) at that step.
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    if not isinstance(objective, AbstractObjective):
        raise TypeError(f"objective must be an AbstractObjective, got {type(objective)}")
    check_finite_tree(model, "model")
    if isinstance(objective, AbstractDataObjective):
        data = _check_data(data, model, objective)
    elif data is not None:
        raise ValueError(f"{type(objective).__name__} is data-free; do not pass data")
    if mesh is not None:
        if not isinstance(mesh, jax.sharding.Mesh):
            raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
        if data is not None and batch_size % mesh.size:
            raise ValueError(
                f"batch_size={batch_size} cannot be split over the {mesh.size} devices of the "
                f"mesh: use a multiple of {mesh.size}"
            )
    optimizer = default_optimizer(learning_rate) if optimizer is None else optimizer
    chunk_size = int(min(chunk_size, steps))

    params, static = eqx.partition(model, filter_spec)
    opt_state = optimizer.init(params)
    # strong int32 (not weak-typed): the chunk's outputs must match its inputs' types, or
    # the second chunk would compile again.
    bad = jnp.asarray(-1, dtype=jnp.int32)
    if mesh is not None:
        params, opt_state, data, key, bad = replicate((params, opt_state, data, key, bad), mesh)
        static = replicate(static, mesh)

    def run_chunk(carry, start):
        params, opt_state, bad = carry
        # jax.set_mesh acts when called: build it only here, where it is entered.
        with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
            params, opt_state, bad, loss, aux = _run_chunk(
                params, static, opt_state, objective, optimizer, data, key,
                jnp.asarray(start, dtype=jnp.int32), steps, bad, chunk_size, batch_size, mesh,
            )
        return (params, opt_state, bad), bad, {"loss": loss, **aux}

    def model_of(carry):
        return eqx.combine(carry[0], static)

    def on_failure(model, step):
        if checkpoint is None:
            return ""
        save(checkpoint, model, {**(metadata or {}), "step": step})
        return f"; the last finite model is saved at {checkpoint}"

    def after_chunk(model, done):
        if checkpoint is not None:
            save(checkpoint, model, {**(metadata or {}), "step": done})

    (params, _, _), history = run_chunks(
        run_chunk, (params, opt_state, bad), steps=steps, chunk_size=chunk_size,
        model_of=model_of, what="loss", desc="fit", progress=progress,
        postfix=lambda d: {"loss": f"{float(np.mean(d['loss'])):.4f}"},
        on_failure=on_failure, after_chunk=after_chunk,
    )
    return eqx.combine(params, static), history
