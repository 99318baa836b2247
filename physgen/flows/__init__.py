"""Normalizing-flow factories returning :class:`~physgen.distributions.Transformed`."""

from ._continuous import cnf as cnf, with_tolerances as with_tolerances
from ._equivariant import equivariant_cnf as equivariant_cnf
from ._factories import (
    masked_autoregressive_flow as masked_autoregressive_flow,
    neural_spline_flow as neural_spline_flow,
    planar_flow as planar_flow,
    real_nvp as real_nvp,
)
from ._lattice import lattice_flow as lattice_flow
