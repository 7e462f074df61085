"""The RigNet dataset layout: OBJ meshes plus ``rig_info`` text files.

A RigNet folder (ModelsResource-RigNetv1) holds ``obj/<id>.obj`` (or ``obj_remesh``), the rigs
``rig_info/<id>.txt`` (or ``rig_info_remesh``) and optional split lists ``train_final.txt``,
``val_final.txt``, ``test_final.txt`` with one character id per line. A rig file has the lines

* ``joints <name> <x> <y> <z>``: a joint and its position,
* ``root <name>``: the root joint (exactly one),
* ``hier <parent> <child>``: a bone,
* ``skin ...``: skinning weights (ignored here).

Every joint except the root must have exactly one parent, and following parents must reach the
root (no cycles). Problems raise ``ValueError`` naming the file (and line), missing files
``FileNotFoundError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from cfm_pose.skeleton import Skeleton

SPLIT_FILES = {"train": "train_final.txt", "val": "val_final.txt", "test": "test_final.txt"}


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")


def _parse_position(words: list[str], where: str) -> list[float]:
    try:
        position = [float(v) for v in words]
    except ValueError as error:
        raise ValueError(f"{where}: bad joint coordinate in {words}") from error
    if not np.isfinite(position).all():
        raise ValueError(f"{where}: joint coordinate is NaN or inf")
    return position


def load_rig_info(path: str | Path) -> Skeleton:
    """The skeleton of a RigNet ``rig_info`` file (module doc), joints in file order."""
    path = Path(path)
    _require_file(path, "RigNet rig file")
    positions: dict[str, list[float]] = {}
    roots: list[str] = []
    bones: list[tuple[str, str, int]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        words = line.split()
        if not words or words[0] == "skin":
            continue
        where = f"{path}:{number}"
        if words[0] == "joints" and len(words) == 5:
            if words[1] in positions:
                raise ValueError(f"{where}: joint {words[1]!r} defined twice")
            positions[words[1]] = _parse_position(words[2:], where)
        elif words[0] == "root" and len(words) == 2:
            roots.append(words[1])
        elif words[0] == "hier" and len(words) == 3:
            bones.append((words[1], words[2], number))
        else:
            raise ValueError(f"{where}: cannot parse line {line.strip()!r}")
    if not positions:
        raise ValueError(f"{path}: no 'joints' lines")
    if len(roots) != 1:
        raise ValueError(f"{path}: expected exactly one 'root' line, found {len(roots)}")
    names = list(positions)
    index = {name: i for i, name in enumerate(names)}
    parents = np.full(len(names), -2)
    if roots[0] not in index:
        raise ValueError(f"{path}: root {roots[0]!r} is not a defined joint")
    parents[index[roots[0]]] = -1
    for parent, child, number in bones:
        for name in (parent, child):
            if name not in index:
                raise ValueError(f"{path}:{number}: unknown joint {name!r} in 'hier' line")
        if parents[index[child]] != -2:
            role = "the root" if parents[index[child]] == -1 else "a joint with a parent"
            raise ValueError(f"{path}:{number}: joint {child!r} is {role} and cannot get parent {parent!r}")
        parents[index[child]] = index[parent]
    orphans = [names[i] for i in np.flatnonzero(parents == -2)]
    if orphans:
        raise ValueError(f"{path}: joints without a parent that are not the root: {orphans[:5]}")
    try:
        return Skeleton(np.array([positions[n] for n in names]), parents, tuple(names))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def load_obj_mesh(path: str | Path) -> trimesh.Trimesh:
    """A triangle mesh from an OBJ file, vertices kept in file order."""
    path = Path(path)
    _require_file(path, "OBJ mesh")
    try:
        mesh = trimesh.load(path, file_type="obj", force="mesh", process=False)
    except Exception as error:
        raise ValueError(f"{path}: not a readable OBJ mesh ({error})") from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{path}: no triangle faces in the OBJ file")
    if not np.isfinite(mesh.vertices).all() or not mesh.area > 0:
        raise ValueError(f"{path}: the mesh has NaN or inf vertices or no surface area")
    return mesh


def load_rignet_character(obj_path: str | Path, rig_info_path: str | Path) -> tuple[trimesh.Trimesh, Skeleton]:
    """The mesh and skeleton of one RigNet character (module doc)."""
    return load_obj_mesh(obj_path), load_rig_info(rig_info_path)


@dataclass(frozen=True)
class RigNetFolder:
    """The characters of a RigNet folder (lazy: each item is loaded when indexed).

    ``folder[i]`` is ``(id, mesh, skeleton)``.
    """

    root: Path
    ids: tuple[str, ...]
    mesh_dir: str = "obj"
    rig_dir: str = "rig_info"

    def mesh_path(self, character_id: str) -> Path:
        return self.root / self.mesh_dir / f"{character_id}.obj"

    def rig_path(self, character_id: str) -> Path:
        return self.root / self.rig_dir / f"{character_id}.txt"

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, item: int) -> tuple[str, trimesh.Trimesh, Skeleton]:
        character_id = self.ids[item]
        mesh, skeleton = load_rignet_character(self.mesh_path(character_id), self.rig_path(character_id))
        return character_id, mesh, skeleton


def _read_split(path: Path) -> list[str]:
    _require_file(path, "RigNet split list")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path}: the split list is empty")
    return ids


def load_rignet_folder(
    root: str | Path, split: str | None = None, mesh_dir: str = "obj", rig_dir: str = "rig_info"
) -> RigNetFolder:
    """The characters of a RigNet folder, all of them or one split (``"train"``, ``"val"``,
    ``"test"``, read from ``<split>_final.txt``). Every listed character must have both files."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"RigNet folder not found: {root}")
    for sub in (mesh_dir, rig_dir):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"RigNet folder {root} has no '{sub}' subfolder")
    if split is None:
        ids: Sequence[str] = sorted(p.stem for p in (root / rig_dir).glob("*.txt"))
        if not ids:
            raise ValueError(f"{root / rig_dir}: no rig files (*.txt)")
    elif split in SPLIT_FILES:
        ids = _read_split(root / SPLIT_FILES[split])
    else:
        raise ValueError(f"unknown RigNet split {split!r}; choose from {sorted(SPLIT_FILES)}")
    folder = RigNetFolder(root, tuple(ids), mesh_dir, rig_dir)
    for character_id in folder.ids:
        _require_file(folder.mesh_path(character_id), f"mesh of character {character_id!r}")
        _require_file(folder.rig_path(character_id), f"rig of character {character_id!r}")
    return folder
