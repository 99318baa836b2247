"""``fit``: the one training verb, run as ``lax.scan`` chunks between host callbacks."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import warnings
from pathlib import Path
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
from ._checkpoint import best_checkpoint, check_writable, load, load_metadata, save
from ._loop import (
    CheckpointWarning,
    DivergenceWarning,
    LossMonitor,
    NonFiniteLossError,
    TrainingInterrupted,
    run_chunks,
)


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
    if x.shape[0] == 0:
        raise ValueError(f"data is empty: shape {x.shape}, at least one example is needed")
    for what, a in (("data", x), ("condition data", cond)):
        if a is not None and jnp.iscomplexobj(a):
            raise ValueError(f"{what} is complex ({a.dtype}); the models take real inputs")
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


class _Keeper:
    """What ``fit`` keeps between chunks: the best model by the smoothed loss and the latest,
    in memory and (with a checkpoint path) on disk; the divergence warning; write failures.

    A model is judged by its own losses: the model at the end of a chunk by the smoothed loss
    through the first step of the next chunk (the first loss measured on it; the run's last
    model, which no step measures, by the smoothed loss through the last step). The best is
    written to ``best_checkpoint(path)`` whenever it changes. The latest checkpoint is
    replaced after every chunk, except by a clearly diverged model (see
    :class:`~physgen.training.LossMonitor`) or, at a non-finite step, by the model whose loss
    was not finite. A checkpoint that cannot be written gives a :class:`CheckpointWarning`
    and training goes on: the model stays in memory. On several hosts only process 0 writes.
    """

    def __init__(self, checkpoint, metadata, model_of, state_of, monitor: LossMonitor, *,
                 start: int, steps: int, initial):
        self.path = None if checkpoint is None else Path(checkpoint)
        self.best_path = None if checkpoint is None else best_checkpoint(checkpoint)
        self.metadata = dict(metadata or {})
        self.model_of, self.state_of = model_of, state_of
        self.monitor = monitor
        self.start, self.end = start, start + steps
        self.writes = self.path is not None and jax.process_index() == 0
        self.best = None  # (model, state, step): the best of this call
        self.pending = (*initial, start)  # the last chunk-end model, not yet measured
        self.latest_step: int | None = None  # the step the latest file holds (this call)
        self.failed: tuple[int, OSError] | None = None
        self.warned = False

    # -- writing ----------------------------------------------------------------------
    def _save(self, path, model, metadata, state, history) -> bool:
        if not self.writes:
            return False
        try:
            save(path, model, metadata, state=state, history=history)
        except OSError as e:
            if self.failed is None:
                held = ("nothing yet" if self.latest_step is None
                        else f"the model of step {self.latest_step}")
                warnings.warn(CheckpointWarning(
                    f"fit could not write the checkpoint ({e}); training goes on and the "
                    f"model stays in memory (fit returns it); {self.path} holds {held}"
                ), stacklevel=6)
            self.failed = (metadata["step"], e)
            return False
        return True

    def _save_latest(self, model, state, step, history) -> None:
        if self._save(self.path, model, {**self.metadata, "step": step}, state, history):
            self.latest_step, self.failed = step, None

    # -- judging models -----------------------------------------------------------------
    def _judge(self, candidate, own_loss=None) -> None:
        """Measure ``candidate`` by its own loss (``None``: by the losses so far) and keep
        it if it is the best."""
        if own_loss is not None:
            if not math.isfinite(own_loss):
                return
            self.monitor.update([own_loss])
        if self.monitor.record(candidate[2]):
            self.best = candidate
            model, state, step = candidate
            meta = {**self.metadata, "step": step, "smoothed_loss": self.monitor.best,
                    "best": True}
            self._save(self.best_path, model, meta, state, None)

    def _diverged(self, step) -> bool:
        """Whether the run has diverged; warns the first time."""
        if not self.monitor.diverged():
            return False
        if not self.warned:
            self.warned = True
            m = self.monitor
            kept = ""
            if self.path is not None:
                held = ("none is written while the loss stays this high"
                        if self.latest_step is None else f"it keeps step {self.latest_step}")
                kept = (f"; {self.path} is not replaced by a diverged model ({held}) and the "
                        f"best model is in {self.best_path}")
            warnings.warn(DivergenceWarning(
                f"fit: the smoothed loss rose to {m.smoothed:.6g} at step {step}, far above "
                f"its best {m.best:.6g} at step {m.best_step} (by more than {m.threshold():.3g}"
                f" = {m.divergence:g} × max(spread {m.best_spread:.3g}, 0.1 × max(1, |best|))"
                f"): training is diverging (learning rate too large?){kept}; "
                f"fit(..., restore_best=True) returns the best model"
            ), stacklevel=5)
        return True

    # -- the loop's hooks -------------------------------------------------------------
    def after_chunk(self, carry, step, diagnostics, history) -> None:
        """``history()``: the diagnostics so far, written with the last chunk only (so that
        the checkpoints of a long run do not grow with it)."""
        losses = diagnostics["loss"]
        self._judge(self.pending, float(losses[0]))
        self.monitor.update(losses[1:])
        model, state = self.model_of(carry), self.state_of(carry, step)
        self.pending = (model, state, step)
        if not self._diverged(step) and self.path is not None:
            self._save_latest(model, state, step, history() if step == self.end else None)

    def failure(self, carry, step, diagnostics, losses, history, message):
        """``losses``: those of the chunk up to and including the bad step ``step``, whose
        loss was measured on the model of ``carry`` (the parameters from before it)."""
        model, state = self.model_of(carry), self.state_of(carry, step)
        own = float(losses[-1])
        if len(losses) > 1:  # the model of the last chunk end was measured by losses[0]
            self._judge(self.pending, float(losses[0]))
            self.monitor.update(losses[1:-1])
            self._judge((model, state, step), own)
        else:  # the bad step is the first of the chunk: the same model
            self._judge(self.pending, own)
        self.pending = None
        if (self.path is not None and step > self.start and math.isfinite(own)
                and not self._diverged(step)):
            self._save_latest(model, state, step, history)
        if not math.isfinite(own):
            message += " (the last finite model, not saved: its own loss is not finite)"
        message += self._where(step, "the last finite model")
        best = self.best if self.best is not None else (None, None, None)
        return NonFiniteLossError(message, step, diagnostics, model, state=state,
                                  history=history, best_model=best[0], best_step=best[2])

    def interrupted(self, carry, step, history):
        model, state = self.model_of(carry), self.state_of(carry, step)
        if self.pending is not None and self.pending[2] == step and step > self.start:
            self._judge(self.pending)
            self.pending = None
        if self.path is not None and step > self.start and not self.monitor.diverged():
            self._save_latest(model, state, step, history)  # again, with the history
        if self.path is not None and self.latest_step == step and self.writes:
            where = (f": the model, its training state and the loss history are saved in "
                     f"{self.path} (continue with physgen.training.load_state and "
                     f"fit(..., state=state))")
        else:
            where = self._where(step, "the model")
        return TrainingInterrupted(
            f"fit interrupted at step {step} of {self.end}{where}; the exception holds "
            f".model, .state and .history",
            model=model, state=state, history=history, step=step,
        )

    def _where(self, step, what) -> str:
        if self.path is None:
            return ""
        parts = []
        if self.latest_step == step and self.writes:
            parts.append(f"{what} is saved in {self.path}")
        elif self.latest_step is not None:
            parts.append(f"{self.path} holds the model of step {self.latest_step}")
        if self.monitor.best_step is not None and self.writes:
            parts.append(f"the best model (step {self.monitor.best_step}) is in "
                         f"{self.best_path}")
        return ("; " + "; ".join(parts)) if parts else ""

    def finish(self) -> None:
        if self.pending is not None:  # the last model, judged by the losses up to it
            self._judge(self.pending)
            self.pending = None
        if self.failed is not None:
            step, e = self.failed
            warnings.warn(CheckpointWarning(
                f"fit finished, but its last checkpoint (step {step}) could not be written "
                f"({e}): save the returned model yourself, e.g. physgen.save(other_path, "
                f"model)"
            ), stacklevel=3)


def _previous_best(checkpoint, state) -> tuple[float, int | None]:
    """When a run is resumed (``state`` given) with the same checkpoint path, the smoothed
    loss of the best model it has kept, so that a worse one does not replace it."""
    if checkpoint is None or state is None:
        return math.inf, None
    try:
        meta = load_metadata(best_checkpoint(checkpoint))
    except (OSError, ValueError):
        return math.inf, None
    loss, step = meta.get("smoothed_loss"), meta.get("step")
    if isinstance(loss, (int, float)) and isinstance(step, int) and step <= int(state.step):
        return float(loss), step
    return math.inf, None


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
    divergence: float | None = 10.0,
    restore_best: bool = False,
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
        steps: number of optimiser steps of this call (a positive int).
        optimizer: an optax transformation (default ``optax.adam(learning_rate)``). A fresh
            but equal transformation (e.g. ``optax.adam(1e-3)`` built anew for every call)
            reuses the compiled training chunk.
        data: ``(N, *event_shape)`` training data for data objectives, or for a conditional
            model the pair ``(x, condition)`` of shapes ``(N, *event_shape)`` and
            ``(N, *cond_shape)``; each step draws a minibatch of ``batch_size`` rows (the same
            rows of both) uniformly with replacement (no short last batch).
        chunk_size: steps per compiled ``lax.scan`` chunk; the progress bar and checkpoint
            are updated between chunks.
        checkpoint: if given, after every chunk the model and the :class:`TrainState` are
            saved there (atomically; :func:`load_state` reads them back to resume), with the
            loss history (:func:`~physgen.training.load_history`) when the run ends, fails
            or is interrupted; and the best model of the run, by its smoothed loss, beside it
            at
            :func:`~physgen.training.best_checkpoint` (``flow.ckpt`` -> ``flow.best.ckpt``).
            A model that has clearly diverged (see ``divergence``) never replaces the latest
            checkpoint, and a non-finite one is never saved. The folder and ``metadata``
            are checked before training starts; a write that fails later (a full disk)
            warns (:class:`~physgen.training.CheckpointWarning`) and training goes on.
        metadata: JSON-serialisable dict stored in the checkpoints (with ``"step"``).
        mesh: a :class:`jax.sharding.Mesh` (e.g. :func:`physgen.parallel.make_mesh`) to
            train data-parallel: the model and the states are replicated on its devices,
            each minibatch (and the samples a data-free objective draws, via
            :func:`physgen.parallel.constrain_batch`) is split over them, and XLA reduces the
            gradients. The random draws are those of one device, so the result equals the
            one-device result up to the order of floating-point sums. ``batch_size`` must be
            divisible by the number of devices; the returned model stays replicated. On
            several hosts only process 0 writes checkpoints.
        state: a :class:`TrainState` returned by an earlier call (or :func:`load_state`):
            continue from its step with its optimiser and objective states. A run of
            ``2N`` steps equals a run of ``N`` steps continued for ``N`` with the same key.
        divergence: the smoothed loss (an exponential moving average of the per-step loss
            over about 20 steps) counts as diverged when it exceeds its best by more than
            ``divergence × max(σ, 0.1 × max(1, |best|))``, ``σ`` the spread of the per-step
            loss when the best was recorded: with the default 10, ten times the noise of the
            loss and at least one unit of it. fit then warns once
            (:class:`~physgen.training.DivergenceWarning`) and stops replacing the latest
            checkpoint until the loss comes back. ``None``: never (for losses that may rise
            by design, such as an annealed objective).
        restore_best: return the best model of the run (by the smoothed loss, at a chunk
            end) and its :class:`TrainState` instead of the last ones.

    Returns:
        ``(model, history, state)``: the trained model; ``history``, a dict of numpy arrays
        of shape ``(steps,)``, ``"loss"`` and every diagnostic the objective reports; and the
        :class:`TrainState` to continue from.

    Raises:
        ValueError, TypeError: bad arguments (``steps``, ``chunk_size``, ``batch_size``,
            empty or ill-shaped data, non-JSON ``metadata``), before any work; ``OSError``
            naming ``checkpoint`` if its folder cannot be written.
        NonFiniteLossError: the loss, a gradient or the new parameters became NaN/inf; names
            the step, the objective's diagnostics at that step and what the checkpoints
            hold, and carries the last finite model, its state, the history and the best
            model.
        TrainingInterrupted: Ctrl-C (a ``KeyboardInterrupt``); the last finished chunk is
            checkpointed and attached (``.model``, ``.state``, ``.history``).
    """
    steps = check_int("steps", steps, 1)
    chunk_size = min(check_int("chunk_size", chunk_size, 1), steps)
    if not isinstance(objective, AbstractObjective):
        raise TypeError(f"objective must be an AbstractObjective, got {type(objective)}")
    if divergence is not None and not (isinstance(divergence, (int, float))
                                       and divergence > 0):
        raise ValueError(f"divergence must be a positive number or None, got {divergence!r}")
    check_finite_tree(model, "model")
    if isinstance(objective, AbstractDataObjective):
        batch_size = check_int("batch_size", batch_size, 1)
        data = _check_data(data, model, objective)
    else:
        if data is not None:
            raise ValueError(f"{type(objective).__name__} is data-free; do not pass data")
        if batch_size is not None:  # unused by data-free objectives, but must make sense
            batch_size = check_int("batch_size", batch_size, 1)
    if mesh is not None:
        check_mesh(mesh, batch_size if data is not None else None, "batch_size")
    if state is not None and not isinstance(state, TrainState):
        raise TypeError(f"state must be a TrainState (from fit or load_state), got "
                        f"{type(state).__name__}")
    if checkpoint is not None and jax.process_index() == 0:
        check_writable(checkpoint, metadata)
        check_writable(best_checkpoint(checkpoint))
    tx = optax.adam(learning_rate) if optimizer is None else optimizer
    params, static = eqx.partition(model, filter_spec)
    if state is None:
        state = init_state(_init_key(key), model, objective, tx, filter_spec=filter_spec)
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

    def state_of(carry, step):
        # after a non-finite step the states are those from before it: step ``step``
        return TrainState(step, carry[1].opt_state, carry[1].objective_state)

    best, best_step = _previous_best(checkpoint, state)
    monitor = LossMonitor(divergence, best=best, best_step=best_step)
    carry = (params, state, bad)
    keeper = _Keeper(checkpoint, metadata, model_of, state_of, monitor, start=start,
                     steps=steps, initial=(model_of(carry), state))
    carry, history = run_chunks(
        run_chunk, carry, steps=steps, chunk_size=chunk_size, start=start,
        what=f"{type(objective).__name__} loss", desc="fit", progress=progress,
        postfix=lambda d: {"loss": f"{float(np.mean(d['loss'])):.4f}"}, handler=keeper,
    )
    keeper.finish()
    if restore_best and keeper.monitor.best_step is not None:
        if keeper.best is not None and keeper.best[2] == keeper.monitor.best_step:
            best_model, best_state, _ = keeper.best
            return best_model, history, best_state
        # the best is that of the run this call resumed: it is only on disk
        best_model, best_state = load_state(best_checkpoint(checkpoint), model, objective, tx,
                                            filter_spec=filter_spec)
        return best_model, history, best_state
    return model_of(carry), history, carry[1]


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
