"""The host side of :func:`physgen.fit`: chunks, progress, the smoothed loss, the first bad
step, Ctrl-C.

``fit`` compiles ``chunk_size`` steps into one ``lax.scan`` that carries the index of the
first step with a non-finite loss or gradient (``-1`` while none) and skips every update from
that step on. Between chunks, on the host, this loop trims the padding of the last chunk,
collects the per-step diagnostics, follows the smoothed loss (:class:`LossMonitor`), raises
:class:`NonFiniteLossError` at the first bad step, moves the progress bar, and hands every
finished chunk to the caller (checkpoints). A Ctrl-C ends the loop with
:class:`TrainingInterrupted`, which carries everything trained so far.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss or gradient.

    ``step`` is the first bad step, ``diagnostics`` the objective's values at that step,
    ``model`` the last model with finite parameters and ``state`` its
    :class:`~physgen.training.TrainState` (the state before step ``step``), ``history`` the
    per-step diagnostics up to that step, and ``best_model``/``best_step`` the best model of
    the run by its smoothed loss (``None`` if no chunk finished). What the checkpoints hold is
    said in the message.
    """

    def __init__(self, message: str, step: int, diagnostics: dict[str, float], model, *,
                 state=None, history=None, best_model=None, best_step=None):
        super().__init__(message)
        self.step = step
        self.diagnostics = diagnostics
        self.model = model
        self.state = state
        self.history = history
        self.best_model = best_model
        self.best_step = best_step


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`physgen.fit`. The message (one line) says where the model is saved.

    ``model``, ``state`` (a :class:`~physgen.training.TrainState`: continue with
    ``fit(..., state=err.state)``), ``history`` and ``step``: the run up to the last finished
    chunk. A ``KeyboardInterrupt``, so ``except Exception`` does not swallow it.
    """

    def __init__(self, message: str, *, model, state, history, step: int):
        super().__init__(message)
        self.model = model
        self.state = state
        self.history = history
        self.step = step


class DivergenceWarning(RuntimeWarning):
    """The smoothed training loss rose far above its best (see :func:`physgen.fit`)."""


class CheckpointWarning(RuntimeWarning):
    """A checkpoint could not be written during :func:`physgen.fit`; training went on."""


class LossMonitor:
    """The smoothed loss, its spread, the best smoothed loss seen, and divergence.

    The smoothed loss is an exponential moving average of the per-step loss with a time
    constant of ``1 / (1 - decay)`` steps (20 by default), its spread ``σ`` the matching
    moving standard deviation. The run counts as *diverged* when the smoothed loss exceeds
    its best by more than ``divergence × max(σ_best, 0.1 × max(1, |best|))``, ``σ_best`` the
    spread when the best was recorded: with the default 10, at least ten times the
    step-to-step noise of the loss and at least one unit of the loss.
    """

    def __init__(self, divergence: float | None = 10.0, decay: float = 0.95,
                 best: float = math.inf, best_step: int | None = None):
        self.divergence = divergence
        self.decay = decay
        self.mean: float | None = None
        self.var = 0.0
        self.best = best
        self.best_step = best_step
        self.best_spread = 0.0

    def update(self, losses) -> None:
        a = 1.0 - self.decay
        for x in np.asarray(losses, np.float64).ravel():
            if not math.isfinite(x):
                continue
            if self.mean is None:
                self.mean = float(x)
                continue
            delta = x - self.mean
            self.mean += a * delta
            self.var = self.decay * (self.var + a * delta * delta)

    @property
    def smoothed(self) -> float:
        return math.nan if self.mean is None else self.mean

    @property
    def spread(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def record(self, step: int) -> bool:
        """Call at a chunk end: ``True`` if the smoothed loss is the best so far."""
        if self.mean is None or not self.mean < self.best:
            return False
        self.best, self.best_step, self.best_spread = self.mean, step, self.spread
        return True

    def threshold(self) -> float:
        floor = 0.1 * max(1.0, abs(self.best))
        return float(self.divergence) * max(self.best_spread, floor)

    def diverged(self) -> bool:
        if self.divergence is None or self.mean is None or not math.isfinite(self.best):
            return False
        return self.mean - self.best > self.threshold()


class ChunkHandler(Protocol):
    def after_chunk(self, carry: Any, step: int, diagnostics: dict[str, np.ndarray],
                    history: Callable[[], dict[str, np.ndarray]]) -> None: ...

    def failure(self, carry: Any, step: int, diagnostics: dict[str, float],
                losses: np.ndarray, history: dict[str, np.ndarray],
                message: str) -> NonFiniteLossError: ...

    def interrupted(self, carry: Any, step: int,
                    history: dict[str, np.ndarray]) -> TrainingInterrupted: ...


def _concat(chunks) -> dict[str, np.ndarray]:
    """The history of ``chunks``, a linked list ``(earlier, diagnostics)`` or ``None``."""
    parts = []
    while chunks is not None:
        chunks, last = chunks
        parts.append(last)
    parts.reverse()
    if not parts:
        return {}
    return {k: np.concatenate([c[k] for c in parts]) for k in parts[0]}


def run_chunks(
    run_chunk: Callable[[Any, int], tuple[Any, Any, dict]],
    carry: Any,
    *,
    steps: int,
    chunk_size: int,
    start: int,
    what: str,
    desc: str,
    progress: bool,
    postfix: Callable[[dict[str, np.ndarray]], dict[str, str]],
    handler: ChunkHandler,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Run ``steps`` steps, numbered from ``start``, as ``ceil(steps / chunk_size)`` calls.

    Args:
        run_chunk: ``(carry, offset) -> (carry, bad, diagnostics)``: the compiled steps
            ``start + offset, …, start + offset + chunk_size - 1``; ``bad`` is the first
            non-finite step so far (``-1``: none), ``diagnostics`` maps names to arrays of
            shape ``(chunk_size,)``.
        what: names the loss in the error message.
        postfix: chunk diagnostics -> progress-bar fields.
        handler: gets every finished chunk (``after_chunk``, with a function returning the
            history so far), builds the error at the first bad step (``failure``) and the
            exception of a Ctrl-C (``interrupted``), which sees the last finished chunk.

    Returns:
        ``(carry, history)``, ``history`` mapping each diagnostic to an array ``(steps,)``.

    Raises:
        NonFiniteLossError: names the first bad step and the diagnostics at that step.
        TrainingInterrupted: on Ctrl-C.
    """
    chunks = None  # (earlier chunks, diagnostics): extended in O(1), by one assignment
    done = 0
    bar = tqdm(total=steps, disable=not progress, desc=desc, dynamic_ncols=True)
    try:
        for c in range(math.ceil(steps / chunk_size)):
            offset = c * chunk_size
            new_carry, bad, diagnostics = run_chunk(carry, offset)
            n = min(chunk_size, steps - offset)
            diagnostics = {k: np.asarray(v)[:n] for k, v in diagnostics.items()}
            b = int(bad)
            if b >= 0:
                i = b - start - offset
                diag = {k: float(v[i]) for k, v in diagnostics.items()}
                details = ", ".join(f"{k}={v:.6g}" for k, v in diag.items())
                message = (f"non-finite {what} or gradient at step {b} ({details}); training "
                           f"stopped with the parameters from before step {b}")
                history = _concat((chunks, {k: v[: i + 1] for k, v in diagnostics.items()}))
                raise handler.failure(new_carry, b, diag, diagnostics["loss"][: i + 1],
                                      history, message)
            # one assignment: a Ctrl-C sees either the chunk before or this one, whole
            carry, done, chunks = new_carry, offset + n, (chunks, diagnostics)
            bar.update(n)
            bar.set_postfix(**postfix(diagnostics))
            handler.after_chunk(carry, start + done, diagnostics,
                                lambda chunks=chunks: _concat(chunks))
    except KeyboardInterrupt as e:
        if isinstance(e, TrainingInterrupted):
            raise
        raise handler.interrupted(carry, start + done, _concat(chunks)) from None
    finally:
        bar.close()
    return carry, _concat(chunks)
