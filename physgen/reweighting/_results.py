"""Frozen result containers: every estimator returns its value together with its error."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._custom_types import Array

_Z95 = 1.959963984540054


class Estimate(eqx.Module):
    """A Monte Carlo estimate with its standard error and a confidence interval.

    ``value`` and ``stderr`` have the shape of the estimated quantity. ``ci_low``/``ci_high``
    bound a 95% interval: ``value ± 1.96 stderr`` (normal approximation) unless the producing
    function says otherwise (e.g. a bootstrap percentile interval). The fields are arrays, so
    an ``Estimate`` passes through ``jit`` and ``vmap``.
    """

    value: Array
    stderr: Array
    ci_low: Array
    ci_high: Array

    def __init__(self, value, stderr, ci_low=None, ci_high=None):
        self.value = jnp.asarray(value)
        self.stderr = jnp.asarray(stderr)
        self.ci_low = self.value - _Z95 * self.stderr if ci_low is None else jnp.asarray(ci_low)
        self.ci_high = self.value + _Z95 * self.stderr if ci_high is None else jnp.asarray(ci_high)


class FreeEnergyProfile(eqx.Module):
    """A reweighted histogram of a collective variable, shapes ``(n_bins,)`` unless noted.

    ``free_energy = -log(probability / bin_width)`` in kT: minus the log of the normalised
    probability DENSITY of the collective variable (no shift; subtract ``min`` for plots).
    ``probability`` is the self-normalised weight in each bin (samples outside ``edges`` count
    in the normalisation, so ``sum(probability) = 1`` when all samples fall inside).
    Empty bins have ``free_energy = inf`` and ``stderr = nan``.
    """

    edges: Array  # (n_bins + 1,)
    centres: Array
    free_energy: Array
    stderr: Array
    probability: Array
    probability_stderr: Array
