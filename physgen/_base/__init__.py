"""What every package of physgen may import: types, input checks, molecular geometry (bond
lengths, angles, torsions), the model root with its capability markers, the objective
interface and the ``Estimate`` result type. It imports nothing else of physgen."""

from ._checks import (
    check_event_shape as check_event_shape,
    check_finite_tree as check_finite_tree,
    check_int as check_int,
    check_output_shape as check_output_shape,
    check_single_example as check_single_example,
)
from ._estimate import Estimate as Estimate
from ._geometry import (
    angle_between as angle_between,
    bond_angle as bond_angle,
    bond_length as bond_length,
    torsion as torsion,
    torsion_from_bonds as torsion_from_bonds,
)
from ._lazy import lazy_import as lazy_import
from ._model import (
    AbstractDensityBound as AbstractDensityBound,
    AbstractExactDensity as AbstractExactDensity,
    AbstractImplicitModel as AbstractImplicitModel,
    AbstractModel as AbstractModel,
    NoDensityError as NoDensityError,
    require_density as require_density,
)
from ._objective import (
    AbstractDataObjective as AbstractDataObjective,
    AbstractObjective as AbstractObjective,
)
from ._types import (
    Array as Array,
    ArrayLike as ArrayLike,
    Float as Float,
    Int as Int,
    Key as Key,
    Scalar as Scalar,
    Shape as Shape,
    Shaped as Shaped,
)
