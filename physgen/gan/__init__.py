"""Generative adversarial networks: samplers without density (no ``log_prob``, no
reweighting), trained by :func:`physgen.fit` with a GAN loss (both players in one step)."""

from .._base import AbstractImplicitModel as AbstractImplicitModel, NoDensityError as NoDensityError
from ._losses import (
    WGANGP as WGANGP,
    AbstractGANLoss as AbstractGANLoss,
    NonSaturatingLoss as NonSaturatingLoss,
    gradient_penalty as gradient_penalty,
    player_labels as player_labels,
)
from ._modules import (
    GAN as GAN,
    Critic as Critic,
    Generator as Generator,
    critic_batch as critic_batch,
    spectral_norm_estimate as spectral_norm_estimate,
)
