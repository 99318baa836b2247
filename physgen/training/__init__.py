"""Training (``fit``) and checkpoints (``save``/``load``)."""

from ._checkpoint import (
    CheckpointError as CheckpointError,
    load as load,
    load_metadata as load_metadata,
    save as save,
)
from ._fit import NonFiniteLossError as NonFiniteLossError, fit as fit
