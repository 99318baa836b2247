"""Score-based diffusion models: forward SDEs (VP, VE) and the DDPM schedule, denoising score
matching, ancestral / reverse-SDE / probability-flow samplers, and an exact log-likelihood
through the probability-flow ODE (a :class:`~physgen.bijections.ContinuousFlow`)."""

from ._ddpm import DDPMSchedule as DDPMSchedule
from ._model import (
    DiffusionModel as DiffusionModel,
    ProbabilityFlowField as ProbabilityFlowField,
    diffusion_model as diffusion_model,
)
from ._objectives import DDPMLoss as DDPMLoss, DenoisingScoreMatching as DenoisingScoreMatching
from ._samplers import (
    ddpm_sample as ddpm_sample,
    reverse_sde_sample as reverse_sde_sample,
    simulate_forward as simulate_forward,
)
from ._sde import VESDE as VESDE, VPSDE as VPSDE, AbstractSDE as AbstractSDE
