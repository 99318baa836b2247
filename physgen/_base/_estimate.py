"""The result type of every estimator: a value with its standard error and an interval."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ._types import Array

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
