"""Metrics for generative models of low-dimensional physics data: test NLL with errors
(exact models) or its bound (VAEs), precision/recall, MMD two-sample test, and distances
between energy distributions for Boltzmann targets; E-W2, W2 and interatomic-distance
distances for particle systems; histogram KL of torsions and W2 on the torus for molecules."""

from .._base import NoDensityError as NoDensityError, require_density as require_density
from ._likelihood import (
    test_nll as test_nll,
    test_nll_bound as test_nll_bound,
)
from ._particles import (
    distance_histogram_distance as distance_histogram_distance,
    energy_w2 as energy_w2,
    histogram_kl as histogram_kl,
    interatomic_distances as interatomic_distances,
    resample_indices as resample_indices,
    sample_w2 as sample_w2,
)
from ._samples import (
    MMDTest as MMDTest,
    energy_distances as energy_distances,
    knn_radii as knn_radii,
    median_bandwidth as median_bandwidth,
    mmd2 as mmd2,
    mmd_test as mmd_test,
    precision_recall as precision_recall,
    wasserstein_1d as wasserstein_1d,
)
