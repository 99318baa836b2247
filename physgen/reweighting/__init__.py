"""Reweighting: importance weights, Kish ESS, self-normalised expectations, log Z and free
energies, every estimate with its standard error (all pure, jittable ``jnp`` functions)."""

from ._bootstrap import bootstrap as bootstrap
from ._bootstrap import percentile_interval as percentile_interval
from ._estimators import elbo as elbo
from ._estimators import expectation as expectation
from ._estimators import log_Z as log_Z
from ._free_energy import free_energy_difference as free_energy_difference
from ._free_energy import free_energy_profile as free_energy_profile
from ._results import Estimate as Estimate
from ._results import FreeEnergyProfile as FreeEnergyProfile
from ._weights import ess_fraction as ess_fraction
from ._weights import kish_ess as kish_ess
from ._weights import log_weights as log_weights
from ._weights import normalised_weights as normalised_weights
