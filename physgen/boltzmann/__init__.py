"""Boltzmann generators: a flow paired with its target, sampled with importance weights."""

from ._generator import BoltzmannGenerator as BoltzmannGenerator
