"""physgen: generative models for physics in JAX + Equinox.

Sub-packages: ``bijections``, ``distributions``, ``flows``, ``nn``, ``datasets``,
``objectives``, ``targets``, ``reweighting``, ``samplers``, ``diagnostics``, ``training``.
"""

__version__ = "0.1.0"

from . import (
    bijections as bijections,
    boltzmann as boltzmann,
    datasets as datasets,
    diagnostics as diagnostics,
    distributions as distributions,
    flows as flows,
    nn as nn,
    objectives as objectives,
    reweighting as reweighting,
    samplers as samplers,
    targets as targets,
    training as training,
)
from .boltzmann import BoltzmannGenerator as BoltzmannGenerator
from .training import (
    CheckpointError as CheckpointError,
    NonFiniteLossError as NonFiniteLossError,
    fit as fit,
    load as load,
    load_metadata as load_metadata,
    save as save,
)
