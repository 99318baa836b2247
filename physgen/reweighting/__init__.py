"""Reweighting: importance weights, Kish ESS and the Pareto k̂ of their tail, self-normalised
expectations, log Z and free energies, every estimate with its standard error (``jnp``
functions; inside ``jit`` they skip the host-side check of the weights), the target mass the
samples missed, and stratified importance sampling (host-side, float64)."""

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
from ._support import unsampled_mass as unsampled_mass
from ._weights import (
    KHAT_THRESHOLD as KHAT_THRESHOLD,
    MIN_ESS as MIN_ESS,
    MIN_ESS_FRACTION as MIN_ESS_FRACTION,
    ImportanceWeightWarning as ImportanceWeightWarning,
    WeightDiagnostics as WeightDiagnostics,
    check_log_weights as check_log_weights,
    ess_fraction as ess_fraction,
    kish_ess as kish_ess,
    log_weights as log_weights,
    normalised_weights as normalised_weights,
    pareto_khat as pareto_khat,
    weight_diagnostics as weight_diagnostics,
)
