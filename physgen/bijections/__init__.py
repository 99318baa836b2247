"""Bijections: invertible maps with tractable log-Jacobians, acting on ONE example.

Positive parameters follow one convention, ``positive(raw) = softplus(raw)`` (see
``physgen.bijections.positive`` / ``inv_positive`` / ``unit_positive``).
"""

from ._actnorm import ActNorm as ActNorm
from ._actnorm import actnorm_init as actnorm_init
from ._affine import Affine as Affine
from ._autoregressive import MaskedAutoregressive as MaskedAutoregressive
from ._base import AbstractBijection as AbstractBijection
from ._chain import Chain as Chain
from ._constraints import bin_fractions as bin_fractions
from ._constraints import inv_positive as inv_positive
from ._constraints import positive as positive
from ._constraints import unit_positive as unit_positive
from ._coupling import AffineCoupling as AffineCoupling
from ._coupling import SplineCoupling as SplineCoupling
from ._invert import Invert as Invert
from ._linear import LULinear as LULinear
from ._permute import Permute as Permute
from ._permute import Reverse as Reverse
from ._planar import Planar as Planar
from ._scan import Scan as Scan
from ._spline import RationalQuadraticSpline as RationalQuadraticSpline
from ._spline import rational_quadratic_spline as rational_quadratic_spline
from ._spline import rational_quadratic_spline_inverse as rational_quadratic_spline_inverse
from ._spline import spline_knots as spline_knots
