"""Bijections: invertible maps with tractable log-Jacobians, acting on ONE example.

Positive parameters follow one convention, ``positive(raw) = softplus(raw)`` (see
``physgen.bijections.positive`` / ``inv_positive`` / ``unit_positive``).
"""

from ._actnorm import ActNorm as ActNorm, actnorm_init as actnorm_init
from ._affine import Affine as Affine
from ._autoregressive import MaskedAutoregressive as MaskedAutoregressive
from ._base import AbstractBijection as AbstractBijection
from ._chain import Chain as Chain
from ._constraints import (
    bin_fractions as bin_fractions,
    inv_positive as inv_positive,
    positive as positive,
    unit_positive as unit_positive,
)
from ._continuous import ContinuousFlow as ContinuousFlow
from ._coupling import (
    AbstractConditioner as AbstractConditioner,
    AbstractPartition as AbstractPartition,
    CheckerboardPartition as CheckerboardPartition,
    ConvConditioner as ConvConditioner,
    Coupling as Coupling,
    FlatPartition as FlatPartition,
    MLPConditioner as MLPConditioner,
    Z2EquivariantConditioner as Z2EquivariantConditioner,
    checkerboard as checkerboard,
)
from ._fourier import FourierScaling as FourierScaling
from ._internal import InternalCoordinates as InternalCoordinates
from ._interval import Interval as Interval
from ._invert import Invert as Invert
from ._linear import LULinear as LULinear
from ._permute import Permute as Permute, Reverse as Reverse
from ._planar import Planar as Planar
from ._scan import Scan as Scan
from ._spline import (
    RationalQuadraticSpline as RationalQuadraticSpline,
    rational_quadratic_spline as rational_quadratic_spline,
    rational_quadratic_spline_inverse as rational_quadratic_spline_inverse,
    spline_knots as spline_knots,
)
from ._transformers import (
    AbstractTransformer as AbstractTransformer,
    AffineTransformer as AffineTransformer,
    CircularSplineTransformer as CircularSplineTransformer,
    SplineTransformer as SplineTransformer,
    wrap_angle as wrap_angle,
)
