"""Analytic SDFs of primitives and families against trimesh's signed distance; families by seed.

Sign conventions: ours is negative inside, trimesh's ``signed_distance`` positive inside, so the
reference is ``-trimesh.proximity.signed_distance``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from cfm_sdf.families import FAMILIES, Shape, random_shape
from cfm_sdf.primitives import Box, Cylinder

SECTIONS = 256


def reference_sdf(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    return -trimesh.proximity.signed_distance(mesh, points)


def probe_points(shape_like, rng: np.random.Generator, n: int, near_std: float) -> np.ndarray:
    """Half uniform in [-1, 1]^3, half near the surface (inside and outside)."""
    uniform = rng.uniform(-1.0, 1.0, size=(n // 2, 3))
    near = shape_like.sample_surface(n - n // 2, rng) + rng.normal(0.0, near_std, size=(n - n // 2, 3))
    return np.concatenate([uniform, near])


def cylinder_tolerance(radius: float) -> float:
    """The inscribed polygon lies within r (1 - cos(pi / sections)) of the cylinder."""
    return radius * (1.0 - math.cos(math.pi / SECTIONS)) + 1e-6


def test_box_sdf_matches_trimesh():
    box = Box((0.1, -0.2, 0.05), (0.3, 0.2, 0.5))
    points = probe_points(box, np.random.default_rng(0), 600, 0.05)
    expected = reference_sdf(box.to_trimesh(), points)
    assert (expected < 0).mean() > 0.1  # inside points are tested too
    np.testing.assert_allclose(box.sdf(points), expected, atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cylinder_sdf_matches_trimesh(axis):
    cylinder = Cylinder((0.05, 0.1, -0.1), 0.35, 0.25, axis=axis)
    points = probe_points(cylinder, np.random.default_rng(axis), 600, 0.05)
    expected = reference_sdf(cylinder.to_trimesh(SECTIONS), points)
    assert (expected < 0).mean() > 0.1
    np.testing.assert_allclose(cylinder.sdf(points), expected, atol=cylinder_tolerance(0.35))


def test_sdf_accepts_tensors_and_arrays():
    box = Box((0.0, 0.0, 0.0), (0.5, 0.5, 0.5))
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.5]])
    np.testing.assert_allclose(box.sdf(points), [-0.5, 0.5, math.sqrt(0.5)])
    out = box.sdf(torch.from_numpy(points).float())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        box.sdf(np.zeros((4, 2)))


def test_union_of_disjoint_parts_is_exact_everywhere():
    """For parts that do not touch, min of exact SDFs is exact inside too."""
    box = Box((-0.4, 0.0, 0.0), (0.3, 0.4, 0.2))
    cylinder = Cylinder((0.45, 0.0, 0.0), 0.3, 0.4, axis=2)
    shape = Shape("test", (box, cylinder))
    mesh = trimesh.util.concatenate([box.to_trimesh(), cylinder.to_trimesh(SECTIONS)])
    points = probe_points(shape, np.random.default_rng(1), 800, 0.05)
    expected = reference_sdf(mesh, points)
    assert (expected < 0).mean() > 0.1
    np.testing.assert_allclose(shape.sdf(points), expected, atol=cylinder_tolerance(0.3))


@pytest.mark.parametrize("family", ["table", "chair", "stool", "shelf"])
def test_family_sdf_against_trimesh_of_its_mesh(family):
    """Against trimesh's signed distance to the marching-cubes mesh of the shape.

    SDFs are 1-Lipschitz in the surface: |d_S(p) - d_M(p)| <= Hausdorff(S, M), and marching
    cubes on a grid of step h keeps the mesh within about h of the surface (it cuts box edges), so
    the tolerance is h. Outside the shape the analytic SDF is exact, so it must agree within h;
    inside it is a bound (|analytic| <= true depth), so analytic >= reference - h, and it is
    exact away from the joints (most inside points agree within h).
    """
    resolution = 96
    h = 2.0 / (resolution - 1)
    rng = np.random.default_rng(11)
    shape = random_shape(family, rng)
    mesh = shape.to_mesh(resolution)
    assert mesh.is_watertight
    points = probe_points(shape, rng, 300, 0.05)
    analytic, expected = shape.sdf(points), reference_sdf(mesh, points)
    outside, inside = analytic > 0, analytic < 0
    assert outside.sum() > 50 and inside.sum() > 30
    np.testing.assert_allclose(analytic[outside], expected[outside], atol=h)
    assert (analytic[inside] >= expected[inside] - h).all()
    assert (np.abs(analytic[inside] - expected[inside]) <= h).mean() > 0.8
    clear = np.abs(analytic) > h
    assert (np.sign(analytic[clear]) == np.sign(expected[clear])).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_families_are_deterministic_by_seed_and_normalised(family):
    first = random_shape(family, np.random.default_rng(3))
    again = random_shape(family, np.random.default_rng(3))
    other = random_shape(family, np.random.default_rng(4))
    assert first == again
    assert first != other
    points = np.random.default_rng(0).uniform(-1, 1, size=(200, 3))
    np.testing.assert_array_equal(first.sdf(points), again.sdf(points))
    lo, hi = first.bounds()
    assert np.all(lo >= -0.9 - 1e-9) and np.all(hi <= 0.9 + 1e-9)
    assert math.isclose(float((hi - lo).max()), 1.8, rel_tol=1e-9)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-9)


def test_mixed_family_draws_every_family():
    seen = {random_shape("mixed", np.random.default_rng(seed)).family for seed in range(40)}
    assert seen == set(FAMILIES) - {"mixed"}


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="unknown shape family 'sofa'"):
        random_shape("sofa", np.random.default_rng(0))


def test_surface_samples_lie_on_the_union_surface():
    shape = random_shape("chair", np.random.default_rng(5))
    points = shape.sample_surface(3000, np.random.default_rng(6))
    assert points.shape == (3000, 3)
    assert np.abs(shape.sdf(points)).max() < 1e-9  # on a part's surface and inside no other part


def test_surface_samples_are_uniform_by_area_on_a_union():
    """A plus sign of two flat boxes (thickness 0.2, flush top and bottom faces).

    Union area 1.52, of which the top and bottom faces are 2 x 0.36: a sampler that counted the
    flush faces twice would put 0.5 of the points there instead of 0.474.
    """
    arm_x = Box((0.0, 0.0, 0.0), (0.5, 0.1, 0.1))
    arm_y = Box((0.0, 0.0, 0.0), (0.1, 0.5, 0.1))
    points = Shape("plus", (arm_x, arm_y)).sample_surface(20000, np.random.default_rng(7))
    on_flat_faces = np.isclose(np.abs(points[:, 2]), 0.1, atol=1e-12).mean()
    assert abs(on_flat_faces - 0.72 / 1.52) < 0.012
