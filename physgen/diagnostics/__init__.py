"""Sampler diagnostics: ESS and R-hat (BlackJAX), integrated autocorrelation times and Monte
Carlo errors (Geyer's initial monotone sequence by default; Wolff's and Sokal's windows by
name), and the one sampler-comparison table."""

from ._autocorrelation import (
    IntegratedAutocorrelation as IntegratedAutocorrelation,
    ShortChainWarning as ShortChainWarning,
    autocorrelation as autocorrelation,
    integrated_autocorrelation_time as integrated_autocorrelation_time,
    mcse as mcse,
    mean_and_mcse as mean_and_mcse,
)
from ._convergence import (
    effective_sample_size as effective_sample_size,
    ess_bulk as ess_bulk,
    ess_tail as ess_tail,
    rhat as rhat,
)
from ._table import comparison_table as comparison_table, render_table as render_table
