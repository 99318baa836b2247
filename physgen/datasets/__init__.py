"""Toy 2-D data sets with exact densities and entropies."""

from ._toy2d import (
    DATASETS as DATASETS,
    AbstractToyDataset as AbstractToyDataset,
    Checkerboard as Checkerboard,
    EightGaussians as EightGaussians,
    Rings as Rings,
    TwoMoons as TwoMoons,
    get_dataset as get_dataset,
)
