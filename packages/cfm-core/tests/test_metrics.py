"""Sample-quality and point-set metrics against brute force, scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from cfm_core.metrics import (
    chamfer_distance,
    energy_distance,
    f_score,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_moments,
    hausdorff_distance,
    nearest_neighbor_distances,
    sliced_wasserstein,
)
from cfm_core.metrics import distribution as distribution_module
from cfm_core.metrics import point_sets as point_sets_module

BACKENDS = ["kdtree", "brute"]


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def exact_cdist(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return (a[:, None, :] - b[None, :, :]).norm(dim=-1)


# ------------------------------------------------------------------------ energy distance --
def brute_energy(x, y, unbiased):
    n, m = len(x), len(y)
    xx, yy = exact_cdist(x, x).sum(), exact_cdist(y, y).sum()
    dx, dy = (n * (n - 1), m * (m - 1)) if unbiased else (n * n, m * m)
    return float(2 * exact_cdist(x, y).mean() - xx / dx - yy / dy)


@pytest.mark.parametrize("unbiased", [True, False])
def test_energy_distance_matches_brute_force(unbiased):
    x, y = randn(50, 3, seed=1), randn(70, 3, seed=2) + 0.3
    assert energy_distance(x, y, unbiased=unbiased) == pytest.approx(brute_energy(x, y, unbiased), rel=1e-12)


def test_energy_distance_v_statistic_matches_scipy_in_1d():
    x, y = randn(300, 1, seed=3), 0.5 + 2 * randn(200, 1, seed=4)
    expected = scipy.stats.energy_distance(x[:, 0].numpy(), y[:, 0].numpy()) ** 2
    assert energy_distance(x, y, unbiased=False) == pytest.approx(expected, rel=1e-9)


def test_energy_distance_blocks_do_not_change_the_result(monkeypatch):
    x, y = randn(41, 2, seed=5), randn(29, 2, seed=6)
    whole = energy_distance(x, y)
    monkeypatch.setattr(distribution_module, "_CHUNK_ELEMENTS", 37)
    assert energy_distance(x, y) == pytest.approx(whole, rel=1e-12)


def test_energy_distance_of_shifted_gaussians_matches_closed_form():
    mu, n = 1.0, 4000
    normal_quantiles = scipy.stats.norm.ppf((np.arange(n) + 0.5) / n)  # evenly spread N(0, 1)
    x = torch.from_numpy(normal_quantiles)[:, None]
    y = mu + x[torch.randperm(n, generator=torch.Generator().manual_seed(8))]
    # X - Y ~ N(-mu, 2): folded-normal mean; E|X - X'| = 2 / sqrt(pi).
    s = math.sqrt(2.0)
    cross = s * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * s**2)) + mu * math.erf(mu / 2)
    expected = 2 * cross - 2 * (2 / math.sqrt(math.pi))
    assert energy_distance(x, y) == pytest.approx(expected, abs=2e-3)
    assert abs(energy_distance(randn(4000, 2, seed=9), randn(4000, 2, seed=10))) < 0.005


def test_energy_distance_accepts_numpy_and_float32():
    x, y = randn(30, 2, seed=11), randn(20, 2, seed=12)
    expected = energy_distance(x, y)
    assert energy_distance(x.numpy(), y.float()) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------- sliced Wasserstein --
def quantile_wasserstein(x, y, p):
    """Brute-force 1-D W_p between empirical laws via quantiles on a fine common grid."""
    xs, ys = np.sort(x), np.sort(y)
    n, m = len(xs), len(ys)
    u = (np.arange(n * m) + 0.5) / (n * m)
    gaps = np.abs(xs[np.floor(u * n).astype(int)] - ys[np.floor(u * m).astype(int)])
    return float(np.mean(gaps**p) ** (1 / p))


def test_sliced_wasserstein_in_1d_is_exact_w1():
    x, y = randn(37, 1, seed=13), 1 + 0.5 * randn(23, 1, seed=14)
    expected = scipy.stats.wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy())
    assert sliced_wasserstein(x, y, n_projections=3, p=1) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("p", [2, 3])
def test_sliced_wasserstein_in_1d_matches_quantile_integral(p):
    x, y = randn(7, 1, seed=15), randn(5, 1, seed=16) ** 2
    expected = quantile_wasserstein(x[:, 0].numpy(), y[:, 0].numpy(), p)
    assert sliced_wasserstein(x, y, n_projections=2, p=p) == pytest.approx(expected, rel=1e-10)


def test_sliced_wasserstein_of_duplicated_translate():
    x = randn(100, 1, seed=17)
    assert sliced_wasserstein(x, torch.cat([x, x]) + 0.7, n_projections=1) == pytest.approx(0.7)
    x3 = randn(500, 3, seed=18)
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    sw = sliced_wasserstein(x3, x3 + c, n_projections=4096, seed=1)
    assert sw == pytest.approx(float(c.norm()) / math.sqrt(3), rel=0.05)
    assert sliced_wasserstein(x3, x3.flip(0)) == pytest.approx(0.0, abs=1e-12)


def test_sliced_wasserstein_seed_fixes_the_directions():
    x, y = randn(200, 4, seed=19), randn(150, 4, seed=20) * 1.5
    assert sliced_wasserstein(x, y, 16, seed=3) == sliced_wasserstein(x, y, 16, seed=3)
    assert sliced_wasserstein(x, y, 16, seed=3) != sliced_wasserstein(x, y, 16, seed=4)


# ------------------------------------------------------------------------ Frechet distance --
def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = 1 + 4 + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)


def test_frechet_distance_matches_sqrtm_on_full_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    root = scipy.linalg.sqrtm(c1 @ c2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * root)
    got = frechet_distance(torch.from_numpy(mu1), torch.from_numpy(c1), mu2, c2)
    assert got == pytest.approx(expected, rel=1e-9)


def test_gaussian_moments_and_features_path():
    f1, f2 = randn(500, 4, seed=21), 2 + randn(400, 4, seed=22) * 0.5
    mean, cov = gaussian_moments(f1)
    np.testing.assert_allclose(mean, f1.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(f1.numpy(), rowvar=False), rtol=1e-10)
    expected = frechet_distance(*gaussian_moments(f1), *gaussian_moments(f2))
    assert frechet_distance_from_features(f1, f2) == pytest.approx(expected)
    assert expected == pytest.approx(16 + 4 * 0.25, rel=0.1)  # |2|^2 * 4 + 4 (1 - 0.5)^2


def test_frechet_distance_with_singular_covariances():
    f = randn(10, 32, seed=23)  # fewer samples than dimensions: rank-9 covariances
    # square roots of round-off-sized eigenvalues leave ~1e-6 (sqrtm does the same)
    assert frechet_distance_from_features(f, f) == pytest.approx(0.0, abs=1e-5)
    assert frechet_distance_from_features(f, randn(12, 32, seed=24)) > 0


# ---------------------------------------------------------------- distribution input errors --
@pytest.mark.parametrize("metric", [energy_distance, sliced_wasserstein, frechet_distance_from_features])
def test_distribution_metrics_reject_bad_input(metric):
    good = randn(10, 2)
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        metric(good[:, 0], good)
    with pytest.raises(ValueError, match="different dimensions"):
        metric(good, randn(10, 3))
    bad = good.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        metric(good, bad)
    with pytest.raises(TypeError, match="tensor or numpy"):
        metric([[0.0, 1.0]], good)


def test_distribution_metrics_need_enough_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        energy_distance(randn(1, 2), randn(5, 2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        gaussian_moments(randn(1, 2))
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(randn(5, 2), randn(5, 2), n_projections=0)
    with pytest.raises(ValueError, match="p must be"):
        sliced_wasserstein(randn(5, 2), randn(5, 2), p=0.5)


def test_frechet_distance_rejects_bad_moments():
    mu, cov = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match=r"cov1 must have shape \(D, D\)"):
        frechet_distance(mu, np.ones((3, 2)), mu, cov)
    with pytest.raises(ValueError, match="moment shapes disagree"):
        frechet_distance(np.zeros(2), cov, mu, cov)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(mu, cov, mu, -cov)
    with pytest.raises(ValueError, match="mu2 contains NaN"):
        frechet_distance(mu, cov, np.array([0.0, np.inf, 0.0]), cov)


# ----------------------------------------------------------------------- nearest neighbours --
def brute_nearest(query, reference):
    return exact_cdist(query, reference).min(dim=1).values


def point_cases():
    a3, b3 = randn(57, 3, seed=30), randn(43, 3, seed=31)
    a2, b2 = randn(20, 2, seed=32), randn(65, 2, seed=33)
    dup_ref = torch.cat([b3[:10], b3[:10], b3[5:15]])  # duplicated reference points
    dup_query = torch.cat([b3[:10], a3[:5], a3[:5]])  # exact hits and duplicated queries
    return {"3d": (a3, b3), "2d": (a2, b2), "duplicates": (dup_query, dup_ref)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["3d", "2d", "duplicates"])
def test_nearest_neighbours_match_brute_force(backend, case):
    query, reference = point_cases()[case]
    dist, idx = nearest_neighbor_distances(query, reference, backend=backend)
    assert dist.shape == idx.shape == (len(query),) and idx.dtype == torch.int64
    torch.testing.assert_close(dist, brute_nearest(query, reference), rtol=0, atol=1e-6)
    torch.testing.assert_close(dist, (query - reference[idx]).norm(dim=1), rtol=0, atol=0)
    if case == "duplicates":
        assert (dist[:10] == 0).all()


def test_nearest_neighbours_accept_numpy_and_keep_gradients():
    query = randn(15, 3, seed=36).requires_grad_(True)
    reference = randn(12, 3, seed=37).numpy()
    dist, _ = nearest_neighbor_distances(query, reference)
    assert dist.dtype == torch.float64
    dist.sum().backward()
    assert query.grad is not None and torch.isfinite(query.grad).all()
    assert query.grad.abs().sum() > 0
    d_np, _ = nearest_neighbor_distances(query.detach().numpy(), reference)
    torch.testing.assert_close(d_np, dist.detach())


def test_auto_backend_choice(monkeypatch):
    assert point_sets_module._choose_backend("auto", torch.zeros(4, 3)) == "kdtree"
    assert point_sets_module._choose_backend("auto", torch.zeros(4, 64)) == "brute"
    monkeypatch.setattr(point_sets_module, "_BRUTE_CHUNK_ELEMENTS", 7)  # many small blocks
    query, reference = randn(30, 64, seed=38), randn(25, 64, seed=39)
    dist, _ = nearest_neighbor_distances(query, reference)
    torch.testing.assert_close(dist, brute_nearest(query, reference), rtol=0, atol=1e-10)


def test_nearest_neighbours_reject_bad_input():
    points = randn(5, 3)
    with pytest.raises(ValueError, match="unknown nearest-neighbour backend"):
        nearest_neighbor_distances(points, points, backend="faiss")
    with pytest.raises(ValueError, match="query and reference have different dimensions"):
        nearest_neighbor_distances(points, randn(5, 2))
    with pytest.raises(ValueError, match=r"reference needs at least 1 samples"):
        nearest_neighbor_distances(points, randn(0, 3))
    with pytest.raises(ValueError, match=r"query must have shape \(N, D\)"):
        nearest_neighbor_distances(randn(2, 5, 3), points)


# ---------------------------------------------------------- Chamfer, F-score and Hausdorff --
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["3d", "2d", "duplicates"])
def test_chamfer_hausdorff_and_f_score_match_brute_force(backend, case):
    a, b = point_cases()[case]
    d_ab, d_ba = brute_nearest(a, b), brute_nearest(b, a)
    result = chamfer_distance(a, b, backend=backend)
    assert result.a_to_b == pytest.approx(float(d_ab.mean()), abs=1e-6)
    assert result.b_to_a == pytest.approx(float(d_ba.mean()), abs=1e-6)
    assert result.sum == pytest.approx(result.a_to_b + result.b_to_a)
    assert result.mean == pytest.approx(0.5 * result.sum)
    squared = chamfer_distance(a, b, squared=True, backend=backend)
    expected_squared = float(d_ab.square().mean() + d_ba.square().mean())
    assert squared.sum == pytest.approx(expected_squared, abs=1e-6)
    assert hausdorff_distance(a, b, backend=backend) == pytest.approx(
        float(torch.maximum(d_ab.max(), d_ba.max())), abs=1e-6
    )
    sorted_ab = d_ab.sort().values
    threshold = float(sorted_ab[len(a) // 2 - 1 : len(a) // 2 + 1].mean())  # between two distances
    precision = float((d_ab < threshold).double().mean())
    recall = float((d_ba < threshold).double().mean())
    f, p, r = f_score(a, b, threshold, backend=backend)
    assert (p, r) == (pytest.approx(precision), pytest.approx(recall))
    assert f == pytest.approx(2 * precision * recall / (precision + recall))


def test_f_score_edge_cases():
    a, b = np.zeros((1, 3)), np.array([[1.0, 0.0, 0.0]])
    assert f_score(a, b, threshold=1.0) == (0.0, 0.0, 0.0)  # the threshold itself is not inside
    assert f_score(a, b, threshold=1.5) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="threshold must be positive"):
        f_score(a, b, threshold=0.0)


def test_chamfer_of_identical_sets_is_zero():
    a = randn(100, 3, seed=40).numpy()
    result = chamfer_distance(a, a[::-1].copy())
    assert result == (0.0, 0.0, 0.0, 0.0)


def test_auto_backend_is_a_kdtree_on_the_cpu_and_brute_force_elsewhere():
    from cfm_core.metrics.point_sets import _choose_backend

    assert _choose_backend("auto", torch.zeros(4, 3)) == "kdtree"
    assert _choose_backend("auto", torch.zeros(4, 17)) == "brute"
    assert _choose_backend("auto", torch.zeros(4, 3, device="meta")) == "brute"  # a GPU tensor's path
