"""Distances between two sample sets (generated vs reference), for sample quality.

All functions take sample matrices of shape ``(N, D)`` (torch tensors or numpy arrays; the two sets
may have different sizes) and return a python float. Arithmetic is float64.

* :func:`energy_distance`: exact, all pairs, chunked so that 20k x 20k runs in seconds on a CPU.
* :func:`sliced_wasserstein`: exact 1-D Wasserstein distances along random directions.
* :func:`frechet_distance`: the Frechet (2-Wasserstein) distance between two Gaussians, the
  formula behind FID; :func:`gaussian_moments` fits the Gaussians to features.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from cfm_core.metrics._inputs import ArrayLike, as_sample_matrix, as_sample_pair

#: Pairwise distances evaluated per chunk (float64: 128 MiB).
_CHUNK_ELEMENTS = 2**24


def _distances(a: Tensor, b: Tensor) -> Tensor:
    """Exact Euclidean distances (no ``|a|^2 + |b|^2 - 2ab`` shortcut, which loses digits)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _pairwise_distance_sum(a: Tensor, b: Tensor) -> float:
    """``sum_ij ||a_i - b_j||`` over all pairs, a block of rows of ``a`` at a time."""
    rows = max(1, _CHUNK_ELEMENTS // b.shape[0])
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for start in range(0, a.shape[0], rows):
        total += _distances(a[start : start + rows], b).sum()
    return float(total)


def _within_distance_sum(a: Tensor) -> float:
    """``sum_ij ||a_i - a_j||`` over all ordered pairs, evaluating each unordered pair once."""
    rows = max(1, _CHUNK_ELEMENTS // a.shape[0])
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for start in range(0, a.shape[0], rows):
        stop = min(start + rows, a.shape[0])
        total += _distances(a[start:stop], a[start:stop]).sum()
        if stop < a.shape[0]:
            total += 2 * _distances(a[start:stop], a[stop:]).sum()
    return float(total)


def energy_distance(x: ArrayLike, y: ArrayLike, *, unbiased: bool = True) -> float:
    """The energy distance ``2 E||X - Y|| - E||X - X'|| - E||Y - Y'||`` between samples.

    It is zero exactly when the two laws agree (Szekely & Rizzo), and in 1-D it equals
    ``2 * integral (F - G)^2``.

    Args:
        x, y: samples of shape ``(N, D)`` and ``(M, D)``, at least 2 each.
        unbiased: ``True`` (default) uses the U-statistics for the within-set terms (divide the sums
            over pairs ``i != j`` by ``N (N - 1)``): an unbiased estimate of the population
            distance, which can come out slightly negative when the laws agree. ``False`` gives the
            V-statistic (divide by ``N^2``, the energy distance between the two empirical laws):
            never negative, biased upwards by ``O(1/N)``.

    Exact: every pair is evaluated (``O(N M)`` work in blocks, memory ``O(N + M)``), on the device
    of the inputs.
    """
    x, y = as_sample_pair(x, y, min_samples=2, dtype=torch.float64)
    n, m = x.shape[0], y.shape[0]
    cross = _pairwise_distance_sum(x, y) / (n * m)
    within_x, within_y = _within_distance_sum(x), _within_distance_sum(y)
    if unbiased:
        within_x, within_y = within_x / (n * (n - 1)), within_y / (m * (m - 1))
    else:
        within_x, within_y = within_x / n**2, within_y / m**2
    return 2 * cross - within_x - within_y


def _random_directions(n: int, dim: int, seed: int) -> Tensor:
    """``n`` directions uniform on the unit sphere of ``R^dim`` (float64, CPU), fixed by
    ``seed``."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(n, dim, generator=g, dtype=torch.float64)
    return directions / directions.norm(dim=1, keepdim=True)


def _quantile_pairing(n: int, m: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The exact coupling of two sorted empirical laws of sizes ``n`` and ``m`` on the line.

    The quantile functions are step functions with steps at ``i/n`` and ``j/m``; on each interval
    between consecutive steps both are constant. Returns, per interval, the index into the sorted
    first sample, the index into the sorted second sample and the interval length (the weights sum
    to one). Breakpoints are kept as integers (units of ``1/(n m)``) so equal steps merge exactly.
    """
    steps = torch.cat([torch.arange(1, n + 1, device=device) * m, torch.arange(1, m + 1, device=device) * n])
    ends = torch.unique(steps)  # sorted
    lengths = torch.diff(ends, prepend=ends.new_zeros(1)).double() / (n * m)
    return (ends + m - 1) // m - 1, (ends + n - 1) // n - 1, lengths


def sliced_wasserstein(x: ArrayLike, y: ArrayLike, n_projections: int = 256, seed: int = 0, p: float = 2) -> float:
    """The sliced ``p``-Wasserstein distance ``(mean_theta W_p^p(theta.X, theta.Y))^(1/p)``.

    ``n_projections`` directions ``theta`` are drawn uniformly on the unit sphere (fixed by
    ``seed``, so two calls compare like with like). Along each direction the 1-D distance between
    the projected empirical laws is exact: both samples are sorted and their quantile functions
    compared on the merged steps ``i/N`` and ``j/M`` (for ``N == M`` this is the plain pairing of
    sorted values). In 1-D (``D = 1``) the result is the exact ``W_p``.
    """
    if n_projections < 1:
        raise ValueError(f"n_projections must be at least 1, got {n_projections}")
    if p < 1:
        raise ValueError(f"p must be >= 1 for a Wasserstein distance, got {p}")
    x, y = as_sample_pair(x, y, dtype=torch.float64)
    idx_x, idx_y, weights = _quantile_pairing(x.shape[0], y.shape[0], x.device)
    directions = _random_directions(n_projections, x.shape[1], seed).to(x.device)
    per_chunk = max(1, _CHUNK_ELEMENTS // (x.shape[0] + y.shape[0] + weights.shape[0]))
    total = 0.0
    for start in range(0, n_projections, per_chunk):
        theta = directions[start : start + per_chunk].T
        proj_x = (x @ theta).sort(dim=0).values
        proj_y = (y @ theta).sort(dim=0).values
        gaps = (proj_x[idx_x] - proj_y[idx_y]).abs().pow(p)
        total += float((weights[:, None] * gaps).sum())
    return (total / n_projections) ** (1 / p)


def gaussian_moments(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (divisor ``N - 1``) of ``features`` ``(N, D)``,
    as float64 numpy arrays (the form FID statistics are stored in)."""
    f = as_sample_matrix(features, "features", min_samples=2, dtype=torch.float64)
    mean = f.mean(dim=0)
    centred = f - mean
    cov = centred.T @ centred / (f.shape[0] - 1)
    return mean.cpu().numpy(), cov.cpu().numpy()


def _as_moment(value: ArrayLike, name: str, ndim: int) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    array = array.astype(np.float64)
    if array.ndim != ndim or (ndim == 2 and array.shape[0] != array.shape[1]):
        expected = "(D,)" if ndim == 1 else "(D, D)"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    return array


def _checked_spectrum(values: np.ndarray, name: str) -> np.ndarray:
    """Eigenvalues of a symmetric positive semi-definite matrix with round-off negatives clipped to
    zero; a clearly negative eigenvalue raises."""
    if values.size and values.min() < -1e-6 * max(1.0, abs(values).max()):
        raise ValueError(f"{name} is not positive semi-definite (eigenvalue {values.min():.3g})")
    return values.clip(min=0.0)


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    return 0.5 * (matrix + matrix.T)


def frechet_distance(mu1: ArrayLike, cov1: ArrayLike, mu2: ArrayLike, cov2: ArrayLike) -> float:
    """The Frechet distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)`` (FID's formula):

        ||mu1 - mu2||^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2)).

    The trace of the matrix square root is computed in float64 from the eigenvalues of the
    symmetric matrix ``S cov2 S`` with ``S = cov1^(1/2)`` (same eigenvalues as ``cov1 cov2``), so no
    complex numbers arise and singular covariances (fewer samples than dimensions) are fine; this
    replaces the usual ``sqrtm`` + "drop a small imaginary part" recipe.
    """
    m1, m2 = _as_moment(mu1, "mu1", 1), _as_moment(mu2, "mu2", 1)
    c1, c2 = _as_moment(cov1, "cov1", 2), _as_moment(cov2, "cov2", 2)
    if not m1.shape[0] == m2.shape[0] == c1.shape[0] == c2.shape[0]:
        raise ValueError(f"moment shapes disagree: mu1 {m1.shape}, cov1 {c1.shape}, mu2 {m2.shape}, cov2 {c2.shape}")
    values1, vectors1 = scipy.linalg.eigh(_symmetric(c1))
    values1 = _checked_spectrum(values1, "cov1")
    _checked_spectrum(scipy.linalg.eigvalsh(_symmetric(c2)), "cov2")
    sqrt_c1 = (vectors1 * np.sqrt(values1)) @ vectors1.T
    product = scipy.linalg.eigvalsh(_symmetric(sqrt_c1 @ c2 @ sqrt_c1))
    trace_sqrt = np.sqrt(_checked_spectrum(product, "cov1^(1/2) cov2 cov1^(1/2)")).sum()
    diff = m1 - m2
    return float(diff @ diff + np.trace(c1) + np.trace(c2) - 2 * trace_sqrt)


def frechet_distance_from_features(features1: ArrayLike, features2: ArrayLike) -> float:
    """:func:`frechet_distance` between Gaussians fitted to features ``(N, D)`` and ``(M, D)``."""
    f1, f2 = as_sample_pair(features1, features2, ("features1", "features2"), min_samples=2)
    return frechet_distance(*gaussian_moments(f1), *gaussian_moments(f2))
