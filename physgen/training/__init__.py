"""Training: :func:`fit`, the one training loop, its resumable :class:`TrainState`, and
checkpoints (``save``/``load``; ``load_state`` to continue a run)."""

from ._checkpoint import (
    CheckpointError as CheckpointError,
    load as load,
    load_metadata as load_metadata,
    save as save,
)
from ._fit import TrainState as TrainState, fit as fit, load_state as load_state
from ._loop import NonFiniteLossError as NonFiniteLossError
