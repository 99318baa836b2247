"""Toy 2-D data sets with exact densities and entropies."""

from ._toy2d import (
    DATASETS as DATASETS,
)
from ._toy2d import (
    AbstractToyDataset as AbstractToyDataset,
)
from ._toy2d import (
    Checkerboard as Checkerboard,
)
from ._toy2d import (
    EightGaussians as EightGaussians,
)
from ._toy2d import (
    Rings as Rings,
)
from ._toy2d import (
    TwoMoons as TwoMoons,
)
from ._toy2d import (
    get_dataset as get_dataset,
)
