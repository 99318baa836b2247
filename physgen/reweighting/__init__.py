"""Reweighting: importance weights, Kish ESS, self-normalised expectations, log Z and free
energies, every estimate with its standard error (pure, jittable ``jnp`` functions), and
stratified importance sampling (host-side, float64)."""

from .._base import Estimate as Estimate
from ._bootstrap import bootstrap as bootstrap, percentile_interval as percentile_interval
from ._estimators import (
    expectation as expectation,
    log_Z as log_Z,
    log_Z_lower_bound as log_Z_lower_bound,
)
from ._free_energy import (
    free_energy_difference as free_energy_difference,
    free_energy_profile as free_energy_profile,
)
from ._results import FreeEnergyProfile as FreeEnergyProfile
from ._stratified import (
    StratifiedEstimate as StratifiedEstimate,
    stratified_estimate as stratified_estimate,
)
from ._weights import (
    ess_fraction as ess_fraction,
    kish_ess as kish_ess,
    log_weights as log_weights,
    normalised_weights as normalised_weights,
)
