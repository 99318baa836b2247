"""Sampler diagnostics: ESS and R-hat (BlackJAX), integrated autocorrelation times and Monte
Carlo errors (Wolff's Γ-method), and the one sampler-comparison table."""

from ._autocorrelation import IntegratedAutocorrelation as IntegratedAutocorrelation
from ._autocorrelation import autocorrelation as autocorrelation
from ._autocorrelation import integrated_autocorrelation_time as integrated_autocorrelation_time
from ._autocorrelation import mcse as mcse
from ._autocorrelation import mean_and_mcse as mean_and_mcse
from ._convergence import effective_sample_size as effective_sample_size
from ._convergence import ess_bulk as ess_bulk
from ._convergence import ess_tail as ess_tail
from ._convergence import rhat as rhat
from ._table import comparison_table as comparison_table
from ._table import render_table as render_table
