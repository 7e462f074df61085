"""Mesh folder -> cached SDF samples (one ``.npz`` per mesh), and the dataset that reads them.

:func:`prepare_mesh_folder` walks a folder of meshes (OBJ, PLY, STL, OFF; ShapeNet-style trees
work), and for each mesh:

1. loads it with trimesh (a scene is concatenated into one mesh);
2. checks it: it must load, be non-empty, **watertight** and consistently wound (a mesh that
   is watertight but turned inside out, negative volume, is inverted and listed as fixed);
   anything else is **reported and skipped**, never used: a line on the console and an entry in
   ``report.json``;
3. normalises it: bounding box centred at the origin, longest half-extent scaled to ``0.9`` (as
   the analytic families), the centre and scale kept in the file to undo it;
4. samples ``n_volume`` points uniform in ``[-1, 1]^3`` and ``n_near`` near-surface points
   (surface samples plus Gaussian offsets of ``near_std``), with signed distances from
   ``trimesh.proximity.signed_distance`` negated to the app's convention (negative inside), and
   ``n_surface`` surface points (the pool the 64-point condition is drawn from);
5. writes ``<out_dir>/<relative path with "/" -> "__">.npz`` atomically.

Sampling is seeded per mesh from ``seed`` and the mesh's relative path, so a mesh gets the same
samples whatever else is in the folder. Existing outputs are kept unless ``overwrite`` (so an
interrupted run resumes).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from tqdm.auto import tqdm

from cfm_sdf.families import NORMALIZED_HALF_EXTENT
from cfm_sdf.meshing import write_atomic
from cfm_sdf.representation import ShapeRecord, near_surface_points

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off")
REPORT_NAME = "report.json"


class MeshRejected(ValueError):
    """A mesh that cannot be used; the message says why."""


@dataclass
class PrepareReport:
    """What :func:`prepare_mesh_folder` did; written as ``report.json`` in the output folder."""

    prepared: list[dict] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    fixed: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def load_checked_mesh(path: Path) -> tuple[trimesh.Trimesh, list[str]]:
    """Load ``path`` and check it; returns the mesh and the fixes applied, or raises
    :class:`MeshRejected` naming the problem."""
    try:
        mesh = trimesh.load(path, force="mesh", process=True)
    except Exception as err:  # trimesh raises many types for unreadable files
        raise MeshRejected(f"cannot be loaded ({type(err).__name__}: {err})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise MeshRejected("no triangles (empty or unreadable mesh)")
    if not np.isfinite(mesh.vertices).all():
        raise MeshRejected("vertices contain NaN or inf")
    if not mesh.is_watertight:
        open_edges = int(len(trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)))
        raise MeshRejected(f"not watertight ({open_edges} boundary edges)")
    if not mesh.is_winding_consistent:
        raise MeshRejected("inconsistent face winding (not orientable)")
    fixes = []
    if mesh.volume < 0:
        mesh.invert()
        fixes.append("inverted faces (negative volume)")
    if not mesh.volume > 0:
        raise MeshRejected(f"non-positive volume ({mesh.volume:.3g})")
    return mesh, fixes


def normalize_mesh(mesh: trimesh.Trimesh, half_extent: float = NORMALIZED_HALF_EXTENT):
    """Centre the bounding box at the origin and scale its longest half-extent to ``half_extent``
    (in place); returns ``(center, scale)`` with ``normalised = (original - center) * scale``."""
    lo, hi = mesh.bounds
    center = (lo + hi) / 2.0
    scale = half_extent / float((hi - lo).max() / 2.0)
    mesh.apply_translation(-center)
    mesh.apply_scale(scale)
    return center, scale


def sample_mesh_sdf(
    mesh: trimesh.Trimesh,
    rng: np.random.Generator,
    n_surface: int,
    n_volume: int,
    n_near: int,
    near_std: float,
    name: str = "",
) -> ShapeRecord:
    """SDF observations of a checked, normalised mesh (negative inside)."""
    surface, _ = trimesh.sample.sample_surface(mesh, n_surface + n_near, seed=rng)
    near = near_surface_points(surface[n_surface:], rng, near_std)
    volume = rng.uniform(-1.0, 1.0, size=(n_volume, 3))
    return ShapeRecord(
        volume_points=volume.astype(np.float32),
        volume_sdf=-trimesh.proximity.signed_distance(mesh, volume).astype(np.float32),
        near_points=near.astype(np.float32),
        near_sdf=-trimesh.proximity.signed_distance(mesh, near).astype(np.float32),
        surface_points=surface[:n_surface].astype(np.float32),
        name=name,
    )


def save_record(record: ShapeRecord, path: Path, **extra: np.ndarray) -> None:
    """Write a record (and extra arrays) as an uncompressed ``.npz``, atomically."""
    buffer = io.BytesIO()
    arrays = {name: getattr(record, name) for name in ShapeRecord.field_names()}
    np.savez(buffer, **arrays, **extra)
    write_atomic(path, buffer.getvalue())


def _output_name(relative: Path) -> str:
    return "__".join(relative.with_suffix("").parts) + f"__{relative.suffix[1:].lower()}.npz"


def find_meshes(folder: Path) -> list[Path]:
    """Mesh files under ``folder`` (recursively), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)


def prepare_mesh_folder(
    folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    n_surface: int = 4096,
    n_volume: int = 16384,
    n_near: int = 16384,
    seed: int = 0,
    near_std: float = 0.02,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Prepare every mesh under ``folder`` into ``out_dir`` (see the module docstring).

    Returns the report (also written to ``out_dir/report.json``). Raises ``FileNotFoundError``
    when ``folder`` does not exist or holds no mesh files.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"mesh folder {folder} does not exist")
    for name, value in (("n_surface", n_surface), ("n_volume", n_volume), ("n_near", n_near)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not near_std > 0:
        raise ValueError(f"near_std must be positive, got {near_std}")
    meshes = find_meshes(folder)
    if not meshes:
        raise FileNotFoundError(f"no mesh files ({', '.join(MESH_SUFFIXES)}) under {folder}")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = PrepareReport(
        settings=dict(
            folder=str(folder),
            n_surface=n_surface,
            n_volume=n_volume,
            n_near=n_near,
            seed=seed,
            near_std=near_std,
            normalized_half_extent=NORMALIZED_HALF_EXTENT,
            sign_convention="negative inside",
        )
    )
    bar = tqdm(meshes, desc="preparing meshes", unit="mesh", disable=not progress)
    for path in bar:
        relative = path.relative_to(folder)
        target = out_dir / _output_name(relative)
        if target.exists() and not overwrite:
            report.cached.append(str(relative))
            continue
        try:
            mesh, fixes = load_checked_mesh(path)
        except MeshRejected as err:
            report.skipped.append({"source": str(relative), "reason": str(err)})
            bar.write(f"skipped {relative}: {err}")
            bar.set_postfix(skipped=len(report.skipped))
            continue
        if fixes:
            report.fixed.append({"source": str(relative), "fixes": fixes})
        center, scale = normalize_mesh(mesh)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_path_key(relative),)))
        record = sample_mesh_sdf(mesh, rng, n_surface, n_volume, n_near, near_std, str(relative))
        save_record(record, target, center=center, scale=np.asarray(scale))
        report.prepared.append({"source": str(relative), "output": target.name, "faces": len(mesh.faces)})
        bar.set_postfix(skipped=len(report.skipped))
    write_atomic(out_dir / REPORT_NAME, json.dumps(asdict(report), indent=2).encode())
    return report


def _path_key(relative: Path) -> int:
    return zlib.crc32(relative.as_posix().encode())


class SdfFolderDataset:
    """The ``.npz`` records of a prepared folder, as :class:`ShapeRecord` (loaded on access).

    Raises ``FileNotFoundError`` for a missing or empty folder and ``ValueError`` naming the file
    for a corrupt one (unreadable archive, missing arrays, wrong shapes, NaN).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"SDF data folder {self.folder} does not exist")
        self.files = sorted(self.folder.glob("*.npz"))
        if not self.files:
            raise FileNotFoundError(f"no .npz records in {self.folder}; run prepare_mesh_folder on a mesh folder first")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> ShapeRecord:
        path = self.files[index]
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: corrupt or unreadable .npz ({type(err).__name__}: {err})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not an .npz archive of SDF samples")
        with data:
            missing = [k for k in ShapeRecord.field_names() if k not in data.files]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}")
            try:
                arrays = {k: data[k] for k in ShapeRecord.field_names()}
            except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
                raise ValueError(f"{path}: corrupt array data ({type(err).__name__}: {err})") from None
        return ShapeRecord(**arrays, name=str(path))
