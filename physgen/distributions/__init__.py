"""Distributions with exact ``log_prob``; public methods broadcast over leading dimensions."""

from ._angles import NormalWithAngles as NormalWithAngles
from ._base import AbstractDistribution as AbstractDistribution
from ._mean_free import MeanFreeNormal as MeanFreeNormal, remove_mean as remove_mean
from ._mixture import GaussianMixture as GaussianMixture
from ._normal import DiagNormal as DiagNormal, StandardNormal as StandardNormal
from ._symmetrized import Z2Symmetrized as Z2Symmetrized
from ._transformed import Transformed as Transformed
