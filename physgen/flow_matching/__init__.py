"""Flow matching: probability paths from noise to data, the conditional flow-matching
objective, and minibatch optimal-transport coupling (also over the permutations and
rotations of identical particles). The trained model is a
``Transformed(base, ContinuousFlow)`` with an exact log-likelihood."""

from ._coupling import ot_coupling as ot_coupling, sinkhorn_log_plan as sinkhorn_log_plan
from ._equivariant import (
    EquivariantFlowMatching as EquivariantFlowMatching,
    align_particles as align_particles,
    equivariant_ot_coupling as equivariant_ot_coupling,
)
from ._objective import FlowMatching as FlowMatching, flow_matching_loss as flow_matching_loss
from ._paths import (
    AbstractProbabilityPath as AbstractProbabilityPath,
    LinearPath as LinearPath,
    VPPath as VPPath,
)
