"""Training (``fit``) and checkpoints (``save``/``load``)."""

from ._checkpoint import (
    CheckpointError as CheckpointError,
)
from ._checkpoint import (
    load as load,
)
from ._checkpoint import (
    load_metadata as load_metadata,
)
from ._checkpoint import (
    save as save,
)
from ._fit import NonFiniteLossError as NonFiniteLossError
from ._fit import fit as fit
