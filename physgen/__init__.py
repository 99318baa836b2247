"""physgen: generative models for physics in JAX + Equinox.

Sub-packages:

- models: ``bijections``, ``distributions``, ``flows`` (coupling, autoregressive, planar,
  continuous and lattice flows), ``flow_matching``, ``diffusion``, ``vae``, ``gan``,
  ``autoregressive``, ``nn``;
- physics: ``targets`` (double well, many-well, Gaussian mixtures, Müller-Brown, lattice φ⁴),
  ``boltzmann``, ``reweighting``, ``observables``;
- training and sampling: ``objectives``, ``training``, ``samplers``;
- assessment: ``diagnostics``, ``metrics``, ``datasets``;
- devices: ``parallel``.
"""

from . import (
    autoregressive as autoregressive,
    bijections as bijections,
    boltzmann as boltzmann,
    datasets as datasets,
    diagnostics as diagnostics,
    diffusion as diffusion,
    distributions as distributions,
    flow_matching as flow_matching,
    flows as flows,
    gan as gan,
    metrics as metrics,
    nn as nn,
    objectives as objectives,
    observables as observables,
    parallel as parallel,
    reweighting as reweighting,
    samplers as samplers,
    targets as targets,
    training as training,
    vae as vae,
)
from ._base import Estimate as Estimate, NoDensityError as NoDensityError
from ._version import __version__ as __version__
from .boltzmann import BoltzmannGenerator as BoltzmannGenerator
from .training import (
    CheckpointError as CheckpointError,
    NonFiniteLossError as NonFiniteLossError,
    fit as fit,
    load as load,
    load_metadata as load_metadata,
    save as save,
)
