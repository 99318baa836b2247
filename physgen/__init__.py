"""physgen: generative models for physics in JAX + Equinox.

Sub-packages: ``bijections``, ``distributions``, ``flows``, ``nn``, ``datasets``,
``objectives``, ``targets``, ``reweighting``, ``samplers``, ``diagnostics``, ``training``.
"""

__version__ = "0.1.0"

from . import (
    bijections as bijections,
)
from . import (
    boltzmann as boltzmann,
)
from . import (
    datasets as datasets,
)
from . import (
    diagnostics as diagnostics,
)
from . import (
    distributions as distributions,
)
from . import (
    flows as flows,
)
from . import (
    nn as nn,
)
from . import (
    objectives as objectives,
)
from . import (
    reweighting as reweighting,
)
from . import (
    samplers as samplers,
)
from . import (
    targets as targets,
)
from . import (
    training as training,
)
from .boltzmann import BoltzmannGenerator as BoltzmannGenerator
from .training import (
    CheckpointError as CheckpointError,
)
from .training import (
    NonFiniteLossError as NonFiniteLossError,
)
from .training import (
    fit as fit,
)
from .training import (
    load as load,
)
from .training import (
    load_metadata as load_metadata,
)
from .training import (
    save as save,
)
