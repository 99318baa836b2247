"""Boltzmann generators: a flow paired with its target, sampled with importance weights, and a
summary that says how far to trust them."""

from ._generator import (
    BoltzmannGenerator as BoltzmannGenerator,
    ReweightingSummary as ReweightingSummary,
    spline_intervals as spline_intervals,
)
