from ._base import AbstractDistribution as AbstractDistribution
