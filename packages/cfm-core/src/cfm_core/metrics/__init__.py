"""Metrics shared by the apps.

Sample quality (distances between two sample sets ``(N, D)``,
:mod:`~cfm_core.metrics.distribution`):
:func:`energy_distance`, :func:`sliced_wasserstein`, :func:`frechet_distance` with
:func:`gaussian_moments` and :func:`frechet_distance_from_features`.

Point sets (:mod:`~cfm_core.metrics.point_sets`): :func:`nearest_neighbor_distances` (k-d tree or
brute-force backends), :func:`chamfer_distance` (both the summed GeomDist and the
0.5-averaged RigNet conventions), :func:`f_score` and :func:`hausdorff_distance`.

All take torch tensors or numpy arrays and return python floats (nearest neighbours: tensors).
"""

from cfm_core.metrics.distribution import (
    energy_distance,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_moments,
    sliced_wasserstein,
)
from cfm_core.metrics.point_sets import (
    KNN_BACKENDS,
    ChamferResult,
    chamfer_distance,
    f_score,
    hausdorff_distance,
    nearest_neighbor_distances,
)

__all__ = [
    "KNN_BACKENDS",
    "ChamferResult",
    "chamfer_distance",
    "energy_distance",
    "f_score",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_moments",
    "hausdorff_distance",
    "nearest_neighbor_distances",
    "sliced_wasserstein",
]
