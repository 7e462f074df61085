"""Built-in procedural shapes for demos and tests, generated on the fly (no files needed).

Every shape fits inside ``[-1, 1]^3``:

* ``torus_knot`` — a thin tube swept along a (2, 3) torus knot: thin, curved, closed (watertight).
* ``lattice`` — a wire-frame-like cubic lattice of thin square struts: many holes (genus 81
  for the default 3x3x3 cells) and thin features; watertight, built as the boundary of voxels.
* ``saddle`` — a hyperbolic-paraboloid patch ``z = (x^2 - y^2) / 2``: an open surface with one
  boundary loop.
* ``open_cylinder`` — a cylinder without caps: an open surface with two boundary loops.
* ``sphere`` — an icosphere of radius 0.9: the simplest closed surface.
* ``blob`` — a sphere with a smooth radial bump pattern: a closed, star-shaped organic shape.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh


def torus_knot(
    p: int = 2,
    q: int = 3,
    major: float = 0.6,
    minor: float = 0.25,
    tube: float = 0.06,
    segments: int = 480,
    sides: int = 16,
) -> trimesh.Trimesh:
    """A tube of radius ``tube`` around the ``(p, q)`` torus knot on the torus with radii
    ``major`` and ``minor``. The tube's cross-section frame is the z axis projected off the
    tangent (the knot's tangent is never vertical), so the surface closes without a seam twist."""

    def knot(theta: np.ndarray) -> np.ndarray:
        radius = major + minor * np.cos(q * theta)
        return np.stack([radius * np.cos(p * theta), radius * np.sin(p * theta), minor * np.sin(q * theta)], axis=-1)

    def knot_tangent(theta: np.ndarray) -> np.ndarray:
        radius = major + minor * np.cos(q * theta)
        d_radius = -minor * q * np.sin(q * theta)
        tangent = np.stack(
            [
                d_radius * np.cos(p * theta) - p * radius * np.sin(p * theta),
                d_radius * np.sin(p * theta) + p * radius * np.cos(p * theta),
                minor * q * np.cos(q * theta),
            ],
            axis=-1,
        )
        return tangent / np.linalg.norm(tangent, axis=-1, keepdims=True)

    def surface(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        theta, phi = 2 * np.pi * u, 2 * np.pi * v
        tangent = knot_tangent(theta)
        normal = np.array([0.0, 0.0, 1.0]) - tangent[..., 2:3] * tangent
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        binormal = np.cross(tangent, normal)
        offset = np.cos(phi)[..., None] * normal + np.sin(phi)[..., None] * binormal
        return knot(theta) + tube * offset

    return _oriented(parametric_mesh(surface, segments, sides, wrap_u=True, wrap_v=True))


def lattice(cells: int = 3, voxels_per_cell: int = 8, half_size: float = 0.9) -> trimesh.Trimesh:
    """The boundary of the voxels on the edges of a ``cells^3`` grid of cubes: square struts one
    voxel thick (``2 half_size / (cells voxels_per_cell + 1)`` wide) spanning ``[-half_size,
    half_size]^3``. Struts meet in full crosses, so the surface is a closed 2-manifold."""
    if cells < 1 or voxels_per_cell < 2:
        raise ValueError(f"need cells >= 1 and voxels_per_cell >= 2, got {cells}, {voxels_per_cell}")
    resolution = cells * voxels_per_cell + 1
    on_grid = np.arange(resolution) % voxels_per_cell == 0
    x, y, z = np.meshgrid(on_grid, on_grid, on_grid, indexing="ij")
    filled = (x.astype(int) + y + z) >= 2  # on a grid line in at least two of three axes
    mesh = voxel_boundary(filled)
    mesh.apply_scale(2 * half_size / resolution)
    mesh.apply_translation([-half_size] * 3)
    return mesh


def saddle(half_width: float = 0.9, resolution: int = 48) -> trimesh.Trimesh:
    """The patch ``z = (x^2 - y^2) / 2`` over ``[-half_width, half_width]^2``: an open surface
    with one boundary loop."""

    def surface(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        x, y = half_width * (2 * u - 1), half_width * (2 * v - 1)
        return np.stack([x, y, 0.5 * (x**2 - y**2)], axis=-1)

    return parametric_mesh(surface, resolution, resolution, wrap_u=False, wrap_v=False)


def open_cylinder(radius: float = 0.5, height: float = 1.6, sides: int = 64, rings: int = 24) -> trimesh.Trimesh:
    """A capless cylinder around the z axis: open, with two boundary loops."""

    def surface(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        angle = 2 * np.pi * u
        return np.stack([radius * np.cos(angle), radius * np.sin(angle), height * (v - 0.5)], -1)

    return parametric_mesh(surface, sides, rings, wrap_u=True, wrap_v=False)


def sphere(radius: float = 0.9, subdivisions: int = 4) -> trimesh.Trimesh:
    """An icosphere."""
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)


def blob(radius: float = 0.7, bump: float = 0.2, subdivisions: int = 5) -> trimesh.Trimesh:
    """An icosphere whose radius along direction ``d`` is ``radius (1 + bump b(d))`` with a smooth
    ``b`` in ``[-1, 1]``: star-shaped, so it stays a closed, self-intersection-free surface."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    d = mesh.vertices
    pattern = np.sin(3 * d[:, 0]) * np.cos(2 * d[:, 1]) + 0.5 * np.sin(4 * d[:, 2] + d[:, 0])
    mesh.vertices = d * (radius * (1 + bump * pattern / 1.5))[:, None]
    return mesh


def parametric_mesh(
    surface: Callable[[np.ndarray, np.ndarray], np.ndarray], nu: int, nv: int, wrap_u: bool, wrap_v: bool
) -> trimesh.Trimesh:
    """Triangulate ``surface(u, v) -> xyz`` on an ``nu x nv`` grid over ``[0, 1]^2``. A wrapped
    direction is periodic (its last row joins the first, with no duplicated vertices)."""
    u = np.arange(nu) / nu if wrap_u else np.linspace(0.0, 1.0, nu)
    v = np.arange(nv) / nv if wrap_v else np.linspace(0.0, 1.0, nv)
    grid_u, grid_v = np.meshgrid(u, v, indexing="ij")
    vertices = surface(grid_u, grid_v).reshape(-1, 3)
    i = np.arange(nu if wrap_u else nu - 1)
    j = np.arange(nv if wrap_v else nv - 1)
    i, j = (a.ravel() for a in np.meshgrid(i, j, indexing="ij"))
    i1, j1 = (i + 1) % nu, (j + 1) % nv
    a, b, c, d = i * nv + j, i1 * nv + j, i1 * nv + j1, i * nv + j1
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)


def voxel_boundary(filled: np.ndarray) -> trimesh.Trimesh:
    """The outward-oriented boundary surface of a boolean voxel grid (voxel ``(i, j, k)`` spans
    ``[i, i+1] x [j, j+1] x [k, k+1]``), with shared corners merged."""
    padded = np.pad(filled.astype(bool), 1)
    unit_square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
    quads = []
    for axis in range(3):
        b_axis, c_axis = (axis + 1) % 3, (axis + 2) % 3
        for step in (1, -1):
            neighbour = np.roll(padded, -step, axis=axis)
            cells = np.argwhere(padded & ~neighbour) - 1  # back to unpadded indices
            corners = np.repeat(cells[:, None, :], 4, axis=1).astype(np.float64)
            corners[:, :, axis] += 1 if step == 1 else 0
            corners[:, :, b_axis] += unit_square[:, 0]
            corners[:, :, c_axis] += unit_square[:, 1]
            # counter-clockwise seen from outside: (b, c) order gives +axis, reversed gives -axis
            quads.append(corners if step == 1 else corners[:, ::-1])
    quads = np.concatenate(quads)
    vertices = quads.reshape(-1, 3)
    index = np.arange(len(vertices)).reshape(-1, 4)
    faces = np.concatenate([index[:, [0, 1, 2]], index[:, [0, 2, 3]]])
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    mesh.merge_vertices()
    return mesh


def _oriented(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """``mesh`` with outward normals (a closed mesh of negative signed volume is flipped)."""
    if mesh.volume < 0:
        mesh.invert()
    return mesh


BUILTIN_SHAPES: dict[str, Callable[[], trimesh.Trimesh]] = {
    "torus_knot": torus_knot,
    "lattice": lattice,
    "saddle": saddle,
    "open_cylinder": open_cylinder,
    "sphere": sphere,
    "blob": blob,
}


def builtin_shape(name: str) -> trimesh.Trimesh:
    """A fresh copy of the built-in shape ``name`` (see the module docstring)."""
    if name not in BUILTIN_SHAPES:
        raise ValueError(f"unknown built-in shape {name!r}; choose one of {sorted(BUILTIN_SHAPES)}")
    return BUILTIN_SHAPES[name]()
