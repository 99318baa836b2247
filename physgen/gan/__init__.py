"""Generative adversarial networks: samplers without density (no ``log_prob``, no
reweighting), trained by alternating critic and generator updates (:func:`fit_gan`)."""

from .._base import AbstractImplicitModel as AbstractImplicitModel, NoDensityError as NoDensityError
from ._fit import fit_gan as fit_gan
from ._losses import (
    WGANGP as WGANGP,
    AbstractGANLoss as AbstractGANLoss,
    NonSaturatingLoss as NonSaturatingLoss,
    gradient_penalty as gradient_penalty,
)
from ._modules import (
    GAN as GAN,
    Critic as Critic,
    Generator as Generator,
    critic_batch as critic_batch,
    spectral_norm_estimate as spectral_norm_estimate,
)
