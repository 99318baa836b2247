"""Training: :func:`fit`, the one training loop, its resumable :class:`TrainState`, and
checkpoints (``save``/``load``; ``load_state`` to continue a run, ``load_history`` for its
losses, ``best_checkpoint`` for the best model kept beside the latest)."""

from ._checkpoint import (
    CheckpointError as CheckpointError,
    best_checkpoint as best_checkpoint,
    load as load,
    load_history as load_history,
    load_metadata as load_metadata,
    save as save,
)
from ._fit import TrainState as TrainState, fit as fit, load_state as load_state
from ._loop import (
    CheckpointWarning as CheckpointWarning,
    DivergenceWarning as DivergenceWarning,
    LossMonitor as LossMonitor,
    NonFiniteLossError as NonFiniteLossError,
    TrainingInterrupted as TrainingInterrupted,
)
