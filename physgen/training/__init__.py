"""Training (``fit``; ``fit_fab`` for FAB with its replay buffer) and checkpoints
(``save``/``load``)."""

from ._checkpoint import (
    CheckpointError as CheckpointError,
    load as load,
    load_metadata as load_metadata,
    save as save,
)
from ._fit import fit as fit
from ._fit_fab import FABState as FABState, fit_fab as fit_fab
from ._loop import NonFiniteLossError as NonFiniteLossError
