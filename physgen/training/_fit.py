"""``fit``: the one training verb, run as ``lax.scan`` chunks between host callbacks."""

from __future__ import annotations

import contextlib
import functools
import math
import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from .._custom_types import Array, Key
from .._errors import check_event_shape, check_finite_tree
from ..objectives._base import AbstractDataObjective, AbstractObjective
from ..parallel._mesh import batch_sharding, replicate
from ._checkpoint import save


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss or gradient.

    ``step`` is the first bad step, ``diagnostics`` the objective's values at that step, and
    ``model`` the last model with finite parameters (also written to the checkpoint, if any).
    """

    def __init__(self, message: str, step: int, diagnostics: dict[str, float], model):
        super().__init__(message)
        self.step = step
        self.diagnostics = diagnostics
        self.model = model


def _tree_all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


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
            idx = jax.random.randint(k_batch, (batch_size,), 0, data.shape[0])
            if mesh is not None:
                idx = jax.lax.with_sharding_constraint(idx, batch_sharding(mesh))
            batch = data[idx]
        (loss, aux), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(params, k_loss, batch)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & _tree_all_finite(grads)
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
        data: ``(N, *event_shape)`` training data for data objectives; each step draws a
            minibatch of ``batch_size`` rows uniformly with replacement (no short last batch).
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
        if data is None:
            raise ValueError(f"{type(objective).__name__} needs data=... (N, *event_shape)")
        data = jnp.asarray(data)
        check_event_shape(data, model.shape, "data")
        if data.ndim != len(model.shape) + 1:
            raise ValueError(f"data must have shape (N, *{tuple(model.shape)}), got {data.shape}")
        if not bool(jnp.all(jnp.isfinite(data))):
            raise ValueError("data contains NaN or inf")
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
    num_chunks = math.ceil(steps / chunk_size)

    params, static = eqx.partition(model, filter_spec)
    opt_state = optimizer.init(params)
    # strong int32 (not weak-typed): the chunk's outputs must match its inputs' types, or
    # the second chunk would compile again.
    bad = jnp.asarray(-1, dtype=jnp.int32)
    if mesh is not None:
        params, opt_state, data, key, bad = replicate((params, opt_state, data, key, bad), mesh)
        static = replicate(static, mesh)
    losses, auxes = [], []
    bar = tqdm(total=steps, disable=not progress, desc="fit", dynamic_ncols=True)
    try:
        for c in range(num_chunks):
            start = c * chunk_size
            # jax.set_mesh acts when called: build it only here, where it is entered.
            with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
                params, opt_state, bad, loss_c, aux_c = _run_chunk(
                    params,
                    static,
                    opt_state,
                    objective,
                    optimizer,
                    data,
                    key,
                    jnp.asarray(start, dtype=jnp.int32),
                    steps,
                    bad,
                    chunk_size,
                    batch_size,
                    mesh,
                )
            n = min(chunk_size, steps - start)
            loss_c = np.asarray(loss_c)[:n]
            aux_c = {k: np.asarray(v)[:n] for k, v in aux_c.items()}
            losses.append(loss_c)
            auxes.append(aux_c)
            b = int(bad)
            if b >= 0:
                model = eqx.combine(params, static)
                i = b - start
                diag = {k: float(v[i]) for k, v in aux_c.items()}
                diag["loss"] = float(loss_c[i])
                if checkpoint is not None:
                    save(checkpoint, model, {**(metadata or {}), "step": b})
                where = f"; the last finite model is saved at {checkpoint}" if checkpoint else ""
                details = ", ".join(f"{k}={v:.6g}" for k, v in diag.items())
                raise NonFiniteLossError(
                    f"non-finite loss or gradient at step {b} ({details}); training stopped "
                    f"with the parameters from before step {b}{where}",
                    b,
                    diag,
                    model,
                )
            bar.update(n)
            bar.set_postfix(loss=f"{float(np.mean(loss_c)):.4f}")
            if checkpoint is not None:
                save(
                    checkpoint, eqx.combine(params, static), {**(metadata or {}), "step": start + n}
                )
    finally:
        bar.close()
    history = {"loss": np.concatenate(losses)}
    for k in auxes[0]:
        history[k] = np.concatenate([a[k] for a in auxes])
    return eqx.combine(params, static), history
