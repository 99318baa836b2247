"""Normalizing-flow factories returning :class:`~physgen.distributions.Transformed`."""

from ._factories import (
    masked_autoregressive_flow as masked_autoregressive_flow,
)
from ._factories import (
    neural_spline_flow as neural_spline_flow,
)
from ._factories import (
    planar_flow as planar_flow,
)
from ._factories import (
    real_nvp as real_nvp,
)
