"""Result containers of the reweighting estimators (``Estimate`` lives in the base module)."""

from __future__ import annotations

import equinox as eqx

from .._base import Array


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
