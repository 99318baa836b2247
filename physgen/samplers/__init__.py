"""Samplers over targets: BlackJAX-backed MCMC kernels, flow independence Metropolis,
parallel tempering and adaptive tempered SMC, run by one verb, :func:`run_mcmc`; importance
samplers over a flow; annealed importance sampling; and the budget-matched comparison of
samplers, :func:`compare_samplers`."""

from ._ais import (
    AISResult as AISResult,
    ais_betas as ais_betas,
    annealed_importance_sampling as annealed_importance_sampling,
)
from ._base import (
    AbstractImportanceSampler as AbstractImportanceSampler,
    AbstractKernelSampler as AbstractKernelSampler,
    AbstractParticleSampler as AbstractParticleSampler,
    AbstractProposalSampler as AbstractProposalSampler,
    AbstractSampler as AbstractSampler,
    BudgetTooSmall as BudgetTooSmall,
    EvalCounts as EvalCounts,
    KernelState as KernelState,
    StepInfo as StepInfo,
    WeightedSamples as WeightedSamples,
)
from ._compare import (
    BudgetPolicy as BudgetPolicy,
    BudgetRun as BudgetRun,
    compare_samplers as compare_samplers,
    estimate_run as estimate_run,
    render_comparison as render_comparison,
    run_with_budget as run_with_budget,
)
from ._hmc import HMC as HMC
from ._imh import FlowIndependenceMetropolis as FlowIndependenceMetropolis, IMHState as IMHState
from ._importance import (
    ImportanceSampler as ImportanceSampler,
    StratifiedImportanceSampler as StratifiedImportanceSampler,
)
from ._mala import MALA as MALA
from ._nuts import NUTS as NUTS
from ._reach import (
    evals_to_reach as evals_to_reach,
    reach_over_seeds as reach_over_seeds,
    render_reach as render_reach,
)
from ._run import MCMCResult as MCMCResult, run_mcmc as run_mcmc
from ._rwm import RandomWalkMetropolis as RandomWalkMetropolis
from ._tempering import (
    ParallelTempering as ParallelTempering,
    PTState as PTState,
    SMCRunState as SMCRunState,
    TemperedSMC as TemperedSMC,
    geometric_ladder as geometric_ladder,
)
