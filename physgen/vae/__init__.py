"""Variational autoencoders: a lower bound on log p(x) (ELBO, IWAE) and an importance-sampled
estimate of it, never an exact ``log_prob``."""

from ._base import (
    AbstractLatentVariableModel as AbstractLatentVariableModel,
    diag_gaussian_log_prob as diag_gaussian_log_prob,
    gaussian_kl as gaussian_kl,
)
from ._objectives import ELBO as ELBO, IWAE as IWAE
from ._vae import (
    VAE as VAE,
    AbstractDecoder as AbstractDecoder,
    BernoulliDecoder as BernoulliDecoder,
    DiagonalGaussianNet as DiagonalGaussianNet,
    GaussianDecoder as GaussianDecoder,
    bernoulli_vae as bernoulli_vae,
    gaussian_vae as gaussian_vae,
    interpolate as interpolate,
    latent_traversal as latent_traversal,
)
