"""Where the shapes come from: procedural characters, SMPL / SMPL-X bodies or a RigNet folder.

Every source hands out :class:`ShapeBatch` es in the RigNet-normalised frame (unit box, standing on
y = 0): a training stream ``shapes(step, count, seed, rows)`` (deterministic in its arguments;
shape ``i`` of a step is drawn from its own generator, so ``rows`` builds exactly those rows of the
step's ``count`` shapes and no others) and a held-out set ``held_out(count, seed)``. Held-out
procedural characters and SMPL bodies come from a seed the training run never used (the caller
checks), RigNet characters from the evaluation split. :func:`make_source` turns a train config into
a source and reports missing or broken model files and folders as
:class:`~cfm_core.cli.ConfigError` naming the option and the file, before any training starts;
:func:`with_detected_model_type` records which SMPL family a model file holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import trimesh
from cfm_core.cli.app import ConfigError
from tqdm import tqdm

from cfm_pose.config import PoseTrainConfig, RigNetConfig, SmplConfig
from cfm_pose.normalize import Normalization
from cfm_pose.procedural import character_batch
from cfm_pose.rignet import RigNetFolder, load_rignet_folder
from cfm_pose.skeleton import Skeleton
from cfm_pose.smpl_sampler import SmplBodySampler
from cfm_pose.surface import sample_mesh_surface
from cfm_pose.tolerance import local_shape_radius


@dataclass(frozen=True, eq=False)
class ShapeBatch:
    """Shapes in the normalised frame: surface ``points (B, N, 3)``, one skeleton each, the
    per-joint tolerance ``(J_b,)`` of each for IoU / precision / recall (``None`` where not
    needed: SMPL, RigNet training batches) and a label each."""

    points: np.ndarray
    skeletons: tuple[Skeleton, ...]
    tolerances: tuple[np.ndarray, ...] | None
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.skeletons)


class ShapeSource(Protocol):
    """A source of shapes with skeletons (module doc)."""

    def shapes(self, step: int, count: int, seed: int, rows: slice = slice(None)) -> ShapeBatch: ...

    def held_out(self, count: int, seed: int) -> ShapeBatch: ...


@dataclass(frozen=True)
class ProceduralSource:
    """Procedural characters; ``template=None`` mixes every template."""

    n_points: int
    template: str | None = None

    def shapes(self, step: int, count: int, seed: int, rows: slice = slice(None)) -> ShapeBatch:
        characters = character_batch(step, count, seed, self.n_points, self.template, rows)
        return ShapeBatch(
            np.stack([c.points for c in characters]),
            tuple(c.skeleton for c in characters),
            tuple(c.joint_tolerance for c in characters),
            tuple(f"{c.template} {i}" for i, c in zip(range(count)[rows], characters, strict=True)),
        )

    def held_out(self, count: int, seed: int) -> ShapeBatch:
        return self.shapes(0, count, seed)


class SmplSource:
    """Posed SMPL or SMPL-X bodies (fixed topology: no joint tolerances)."""

    def __init__(self, sampler: SmplBodySampler) -> None:
        self.sampler = sampler

    def shapes(self, step: int, count: int, seed: int, rows: slice = slice(None)) -> ShapeBatch:
        bodies = self.sampler.bodies(step, count, seed, rows)
        family = self.sampler.family
        skeletons = tuple(Skeleton(j, family.parents, family.names) for j in bodies.joints)
        return ShapeBatch(bodies.points, skeletons, None, tuple(f"body {i}" for i in range(count)[rows]))

    def held_out(self, count: int, seed: int) -> ShapeBatch:
        return self.shapes(0, count, seed)


@dataclass(frozen=True, eq=False)
class _RigNetCharacter:
    """One RigNet character, normalised (mesh vertices and joints through the same map)."""

    mesh: trimesh.Trimesh
    skeleton: Skeleton

    @cached_property
    def tolerance(self) -> np.ndarray:
        return local_shape_radius(self.mesh, self.skeleton)


class RigNetSource:
    """RigNet characters: surface points sampled afresh on each use; loaded once, then cached.

    A character whose mesh or rig file is broken raises :class:`~cfm_core.cli.ConfigError`
    naming ``option`` and the file; :meth:`load_all` reads every character up front.
    """

    def __init__(
        self, train: RigNetFolder, held_out: RigNetFolder, n_points: int, option: str = "--rignet.root"
    ) -> None:
        self.train, self.eval, self.n_points, self.option = train, held_out, n_points, option
        self._cache: dict[tuple[Path, str], _RigNetCharacter] = {}

    def load_all(self) -> None:
        """Read every character of both splits now (with a progress bar), so that a broken file
        stops the command before any training."""
        for folder in (self.train, self.eval):
            for index in tqdm(
                range(len(folder)), desc=f"reading RigNet characters ({folder.root})", unit="character", leave=False
            ):
                self._character(folder, index)

    def _character(self, folder: RigNetFolder, index: int) -> _RigNetCharacter:
        key = (folder.root, folder.ids[index])
        if key not in self._cache:
            try:
                _, mesh, skeleton = folder[index]
            except (FileNotFoundError, ValueError) as err:
                raise ConfigError(f"{self.option}: {err}") from None
            norm = Normalization.rignet_of_points(mesh.vertices)
            mesh = trimesh.Trimesh(norm.apply(mesh.vertices), mesh.faces, process=False)
            skeleton = Skeleton(norm.apply(skeleton.joints), skeleton.parents, skeleton.names)
            self._cache[key] = _RigNetCharacter(mesh, skeleton)
        return self._cache[key]

    def _batch(
        self, folder: RigNetFolder, indices: np.ndarray, rngs: list[np.random.Generator], with_tolerance: bool
    ) -> ShapeBatch:
        characters = [self._character(folder, int(i)) for i in indices]
        points = np.stack(
            [
                sample_mesh_surface(c.mesh.vertices, c.mesh.faces, self.n_points, r)
                for c, r in zip(characters, rngs, strict=True)
            ]
        )
        tolerances = tuple(c.tolerance for c in characters) if with_tolerance else None
        return ShapeBatch(
            points, tuple(c.skeleton for c in characters), tolerances, tuple(folder.ids[int(i)] for i in indices)
        )

    def shapes(self, step: int, count: int, seed: int, rows: slice = slice(None)) -> ShapeBatch:
        indices = np.random.default_rng([seed, step]).integers(len(self.train), size=count)
        rngs = [np.random.default_rng([seed, step, i]) for i in range(count)[rows]]
        return self._batch(self.train, indices[rows], rngs, with_tolerance=False)

    def held_out(self, count: int, seed: int) -> ShapeBatch:
        indices = np.arange(min(count, len(self.eval)))
        rngs = [np.random.default_rng([seed, int(i)]) for i in indices]
        return self._batch(self.eval, indices, rngs, with_tolerance=True)


def _smpl_source(cfg: SmplConfig, n_points: int, path: str | None) -> SmplSource:
    model = path or cfg.model
    try:
        sampler = SmplBodySampler(
            model,
            cfg.gender,
            cfg.num_betas,
            n_points,
            cfg.beta_std,
            cfg.pose_std,
            motion_path=cfg.motion,
            model_type=cfg.model_type,
        )
    except (FileNotFoundError, ValueError) as err:
        if cfg.motion and str(cfg.motion) in str(err):
            option = "--smpl.motion"
        else:
            option = "--data-path" if path else "--smpl.model"
        raise ConfigError(f"{option}: {err}") from None
    return SmplSource(sampler)


def _rignet_source(cfg: RigNetConfig, n_points: int, path: str | None) -> RigNetSource:
    root, option = (path, "--data-path") if path else (cfg.root, "--rignet.root")
    folders = []
    for split in (cfg.split, cfg.eval_split):
        try:
            folders.append(load_rignet_folder(root, None if split == "all" else split, cfg.mesh_dir, cfg.rig_dir))
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"{option}: {err}") from None
    return RigNetSource(folders[0], folders[1], n_points, option)


def make_source(cfg: PoseTrainConfig, data_path: str | None = None, read_all: bool = False) -> ShapeSource:
    """The source a train config describes; ``data_path`` replaces the SMPL model or RigNet folder
    (e.g. moved since training). Bad files raise :class:`ConfigError` naming them; with
    ``read_all`` (training) every RigNet character is read here, before any work, rather than
    when a batch first draws it."""
    if cfg.data == "procedural":
        template = cfg.procedural.template
        return ProceduralSource(cfg.n_points, None if template == "mixed" else template)
    if cfg.data == "smpl":
        return _smpl_source(cfg.smpl, cfg.n_points, data_path)
    source = _rignet_source(cfg.rignet, cfg.n_points, data_path)
    if read_all:
        source.load_all()
    return source


def with_detected_model_type(cfg: PoseTrainConfig, source: ShapeSource) -> PoseTrainConfig:
    """``cfg`` with ``--smpl.model-type`` set to the family the SMPL source's file holds (so a
    saved run knows its joint layout without the file); other configs unchanged."""
    if not isinstance(source, SmplSource):
        return cfg
    return replace(cfg, smpl=replace(cfg.smpl, model_type=source.sampler.family.key))
