"""The host side of :func:`physgen.fit`: chunks, progress, diagnostics, the first bad step.

``fit`` compiles ``chunk_size`` steps into one ``lax.scan`` that carries the index of the
first step with a non-finite loss or gradient (``-1`` while none) and skips every update from
that step on. Between chunks, on the host, this loop trims the padding of the last chunk,
collects the per-step diagnostics, raises :class:`NonFiniteLossError` at the first bad step,
and moves the progress bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm


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


def run_chunks(
    run_chunk: Callable[[Any, int], tuple[Any, Any, dict]],
    carry: Any,
    *,
    steps: int,
    chunk_size: int,
    start: int,
    model_of: Callable[[Any], Any],
    what: str,
    desc: str,
    progress: bool,
    postfix: Callable[[dict[str, np.ndarray]], dict[str, str]],
    on_failure: Callable[[Any, int], str],
    after_chunk: Callable[[Any, int], None],
) -> tuple[Any, dict[str, np.ndarray]]:
    """Run ``steps`` steps, numbered from ``start``, as ``ceil(steps / chunk_size)`` calls.

    Args:
        run_chunk: ``(carry, offset) -> (carry, bad, diagnostics)``: the compiled steps
            ``start + offset, …, start + offset + chunk_size - 1``; ``bad`` is the first
            non-finite step so far (``-1``: none), ``diagnostics`` maps names to arrays of
            shape ``(chunk_size,)``.
        model_of: ``carry -> model`` (the last finite one, for the error and checkpoints).
        what: names the loss in the error message.
        postfix: chunk diagnostics -> progress-bar fields.
        on_failure: ``(model, step) -> text`` appended to the error (e.g. saving a checkpoint).
        after_chunk: ``(carry, steps_done)`` called after every finite chunk.

    Returns:
        ``(carry, history)``, ``history`` mapping each diagnostic to an array ``(steps,)``.

    Raises:
        NonFiniteLossError: names the first bad step and the diagnostics at that step.
    """
    history: dict[str, list[np.ndarray]] = {}
    bar = tqdm(total=steps, disable=not progress, desc=desc, dynamic_ncols=True)
    try:
        for c in range(math.ceil(steps / chunk_size)):
            offset = c * chunk_size
            carry, bad, diagnostics = run_chunk(carry, offset)
            n = min(chunk_size, steps - offset)
            diagnostics = {k: np.asarray(v)[:n] for k, v in diagnostics.items()}
            for k, v in diagnostics.items():
                history.setdefault(k, []).append(v)
            b = int(bad)
            if b >= 0:
                model = model_of(carry)
                diag = {k: float(v[b - start - offset]) for k, v in diagnostics.items()}
                details = ", ".join(f"{k}={v:.6g}" for k, v in diag.items())
                extra = on_failure(model, b)
                raise NonFiniteLossError(
                    f"non-finite {what} or gradient at step {b} ({details}); training stopped "
                    f"with the parameters from before step {b}{extra}",
                    b,
                    diag,
                    model,
                )
            bar.update(n)
            bar.set_postfix(**postfix(diagnostics))
            after_chunk(carry, offset + n)
    finally:
        bar.close()
    return carry, {k: np.concatenate(v) for k, v in history.items()}
