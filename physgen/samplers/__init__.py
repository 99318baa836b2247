"""Samplers over targets: BlackJAX-backed MCMC kernels, flow independence Metropolis,
parallel tempering and adaptive tempered SMC, run by one verb, :func:`run_mcmc`."""

from ._base import AbstractKernelSampler as AbstractKernelSampler
from ._base import AbstractSampler as AbstractSampler
from ._base import EvalCounts as EvalCounts
from ._base import KernelState as KernelState
from ._base import StepInfo as StepInfo
from ._hmc import HMC as HMC
from ._imh import FlowIndependenceMetropolis as FlowIndependenceMetropolis
from ._imh import IMHState as IMHState
from ._mala import MALA as MALA
from ._nuts import NUTS as NUTS
from ._run import MCMCResult as MCMCResult
from ._run import run_mcmc as run_mcmc
from ._rwm import RandomWalkMetropolis as RandomWalkMetropolis
from ._tempering import ParallelTempering as ParallelTempering
from ._tempering import PTState as PTState
from ._tempering import SMCRunState as SMCRunState
from ._tempering import TemperedSMC as TemperedSMC
from ._tempering import geometric_ladder as geometric_ladder
