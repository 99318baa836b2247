"""Samplers over targets: BlackJAX-backed MCMC kernels, flow independence Metropolis,
parallel tempering and adaptive tempered SMC, run by one verb, :func:`run_mcmc`."""

from ._ais import (
    AISResult as AISResult,
    ais_betas as ais_betas,
    annealed_importance_sampling as annealed_importance_sampling,
)
from ._base import (
    AbstractKernelSampler as AbstractKernelSampler,
    AbstractParticleSampler as AbstractParticleSampler,
    AbstractSampler as AbstractSampler,
    EvalCounts as EvalCounts,
    KernelState as KernelState,
    StepInfo as StepInfo,
)
from ._hmc import HMC as HMC
from ._imh import FlowIndependenceMetropolis as FlowIndependenceMetropolis, IMHState as IMHState
from ._mala import MALA as MALA
from ._nuts import NUTS as NUTS
from ._run import MCMCResult as MCMCResult, run_mcmc as run_mcmc
from ._rwm import RandomWalkMetropolis as RandomWalkMetropolis
from ._tempering import (
    ParallelTempering as ParallelTempering,
    PTState as PTState,
    SMCRunState as SMCRunState,
    TemperedSMC as TemperedSMC,
    geometric_ladder as geometric_ladder,
)
