"""Built-in shapes: topology, orientation, size, and areas/volumes against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from cfm_geometry.shapes import BUILTIN_SHAPES, builtin_shape, lattice, torus_knot

CLOSED = {"torus_knot": 0, "lattice": -160, "sphere": 2, "blob": 2}  # name -> Euler number
OPEN = {"saddle": 1, "open_cylinder": 2}  # name -> boundary loops


def boundary_loops(mesh: trimesh.Trimesh) -> int:
    """The number of connected loops of edges used by exactly one face."""
    single = trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)
    edges = mesh.edges_sorted[single]
    return len(trimesh.graph.connected_components(edges, min_len=1))


def test_every_shape_is_listed():
    assert set(BUILTIN_SHAPES) == set(CLOSED) | set(OPEN)
    with pytest.raises(ValueError, match="unknown built-in shape 'teapot'"):
        builtin_shape("teapot")


@pytest.mark.parametrize("name", sorted(BUILTIN_SHAPES))
def test_shape_is_a_clean_bounded_surface(name):
    mesh = builtin_shape(name)
    assert np.isfinite(mesh.vertices).all()
    assert np.abs(mesh.vertices).max() <= 1.0
    assert mesh.area_faces.min() > 1e-8  # no degenerate triangles
    assert mesh.is_winding_consistent
    if name in CLOSED:
        assert mesh.is_watertight and mesh.volume > 0  # closed, normals outward
        assert mesh.euler_number == CLOSED[name]
    else:
        assert not mesh.is_watertight
        assert boundary_loops(mesh) == OPEN[name]


def test_builtin_shape_returns_a_fresh_mesh():
    first = builtin_shape("sphere")
    first.vertices *= 2
    assert np.abs(builtin_shape("sphere").vertices).max() <= 0.9 + 1e-9


def test_closed_form_areas():
    assert builtin_shape("sphere").area == pytest.approx(4 * np.pi * 0.9**2, rel=2e-3)
    assert builtin_shape("open_cylinder").area == pytest.approx(2 * np.pi * 0.5 * 1.6, rel=2e-3)
    # a tube of radius a around a closed curve of length L has area 2 pi a L (Pappus/Weyl)
    theta = np.linspace(0, 2 * np.pi, 20_001)
    radius = 0.6 + 0.25 * np.cos(3 * theta)
    curve = np.stack([radius * np.cos(2 * theta), radius * np.sin(2 * theta), 0.25 * np.sin(3 * theta)], axis=1)
    length = np.linalg.norm(np.diff(curve, axis=0), axis=1).sum()
    assert torus_knot().area == pytest.approx(2 * np.pi * 0.06 * length, rel=1e-2)


def test_lattice_volume_and_thin_struts():
    cells, per_cell = 3, 8
    mesh = lattice(cells, per_cell)
    resolution, lines = cells * per_cell + 1, cells + 1
    # voxels on grid lines of at least two axes, by inclusion-exclusion over the three axes
    voxels = 3 * lines**2 * resolution - 2 * lines**3
    assert mesh.volume == pytest.approx(voxels * (1.8 / resolution) ** 3, rel=1e-9)
    np.testing.assert_allclose(mesh.bounds, [[-0.9] * 3, [0.9] * 3])
    assert 1.8 / resolution < 0.08  # the struts are thin
