"""A shape's training sample, the value scaling, the correlated noise and deterministic batches.

A shape is a function (its SDF) observed at points (Functional Diffusion):

* **context points** ``(Nc, 3)``, uniform in ``[-1, 1]^3``, with their SDF values: the state that
  the flow map moves (``x_data`` of :class:`~cfm_core.FlowMap` is ``(B, Nc)``);
* **query points** ``(Nq, 3)``: uniform volume points, near-surface points (surface samples plus
  isotropic Gaussian offsets of std ``near_std``) and surface points (value 0), with their SDF
  values, for losses or metrics at points other than the context;
* **condition**: ``n_condition`` (64) points sampled on the surface.

Value scaling. Network values are ``clamp(sdf / truncation, -1, 1)`` (default truncation ``0.2``,
a tenth of the domain): values lie in ``[-1, 1]`` (EDM's ``sigma_data = 0.5`` fits them), the
network spends its capacity near the surface, and the zero level set (the surface) is unchanged.
:func:`decode_sdf` maps back to distances (exact within ``truncation`` of the surface).

Noise. Functional Diffusion's noise is a *field*: a coarse ``G^3`` grid of iid N(0, 1) values
trilinearly interpolated at the points, one grid per sample shared by all its points (the model
draws it in training, :class:`~cfm_sdf.model.CorrelatedNoiseSampler`, and
:mod:`cfm_sdf.generation` in sampling). Trilinear interpolation of iid values has variance
``prod_axes((1-f)^2 + f^2)`` (1 at grid nodes, 1/8 at cell centres); :func:`correlated_noise`
divides by its square root, so the field has exactly unit variance at every point (the
formulations assume standard-normal noise), is continuous, correlated within one cell
(``2 / (G - 1)``) and independent beyond two cells. The default ``G = 16`` makes the correlation
length (0.13) about the spacing of 2,048 uniform context points (0.16).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cfm_sdf.families import FAMILIES, Shape, random_shape


@dataclass(frozen=True)
class RepresentationConfig:
    """Sizes and scales of one training sample (see the module docstring)."""

    n_context: int = 2048
    n_query_volume: int = 1024
    n_query_near: int = 1024
    n_query_surface: int = 256
    n_condition: int = 64
    truncation: float = 0.2
    near_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("n_context", "n_condition"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("n_query_volume", "n_query_near", "n_query_surface"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if not self.truncation > 0 or not self.near_std > 0:
            raise ValueError(f"truncation and near_std must be positive, got {self.truncation}, {self.near_std}")

    @property
    def n_query(self) -> int:
        return self.n_query_volume + self.n_query_near + self.n_query_surface


def encode_sdf(sdf: Tensor | np.ndarray, truncation: float) -> Tensor | np.ndarray:
    """Signed distances -> network values ``clamp(sdf / truncation, -1, 1)``."""
    return (sdf / truncation).clip(-1.0, 1.0)


def decode_sdf(values: Tensor | np.ndarray, truncation: float) -> Tensor | np.ndarray:
    """Network values -> signed distances (``values * truncation``)."""
    return values * truncation


# ------------------------------------------------------------------------------- records --
@dataclass(frozen=True)
class ShapeRecord:
    """Pools of SDF observations of one shape (raw distances, negative inside), float32.

    The mesh pipeline writes one per mesh (``.npz`` with these field names); analytic shapes
    make them on the fly with :func:`analytic_record`.
    """

    volume_points: np.ndarray
    volume_sdf: np.ndarray
    near_points: np.ndarray
    near_sdf: np.ndarray
    surface_points: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        where = f" in {self.name}" if self.name else ""
        for points, values in (("volume_points", "volume_sdf"), ("near_points", "near_sdf")):
            p, v = getattr(self, points), getattr(self, values)
            if p.ndim != 2 or p.shape[1] != 3 or v.shape != (p.shape[0],):
                raise ValueError(f"{points} must be (N, 3) and {values} (N,){where}; got {p.shape} and {v.shape}")
        if self.surface_points.ndim != 2 or self.surface_points.shape[1] != 3:
            raise ValueError(f"surface_points must be (N, 3){where}, got {self.surface_points.shape}")
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray) and not np.isfinite(value).all():
                raise ValueError(f"{field.name} contains NaN or inf{where}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The array fields (the keys of a pipeline ``.npz``)."""
        return tuple(f.name for f in fields(cls) if f.name != "name")


class RecordSource(Protocol):
    """Anything indexable that yields :class:`ShapeRecord` (e.g. ``pipeline.SdfFolderDataset``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> ShapeRecord: ...


def near_surface_points(surface: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Surface points moved by isotropic Gaussian offsets of ``std``, clipped to ``[-1, 1]^3``."""
    return np.clip(surface + rng.normal(0.0, std, size=surface.shape), -1.0, 1.0)


def analytic_record(shape: Shape, rng: np.random.Generator, config: RepresentationConfig) -> ShapeRecord:
    """Exactly the observations one training sample of ``shape`` needs, from its analytic SDF."""
    volume = rng.uniform(-1.0, 1.0, size=(config.n_context + config.n_query_volume, 3))
    surface = shape.sample_surface(config.n_query_near + config.n_query_surface + config.n_condition, rng)
    near = near_surface_points(surface[: config.n_query_near], rng, config.near_std)
    return ShapeRecord(
        volume_points=volume.astype(np.float32),
        volume_sdf=shape.sdf(volume).astype(np.float32),
        near_points=near.astype(np.float32),
        near_sdf=shape.sdf(near).astype(np.float32),
        surface_points=surface[config.n_query_near :].astype(np.float32),
        name=shape.family,
    )


def draw_sample(record: ShapeRecord, rng: np.random.Generator, config: RepresentationConfig) -> dict:
    """One training sample (numpy float32) drawn without replacement from a record's pools.

    Keys: ``context_points (Nc, 3)``, ``context_values (Nc,)``, ``query_points (Nq, 3)``,
    ``query_values (Nq,)`` (volume, then near, then surface queries), ``surface_points
    (n_condition, 3)``; values are encoded (:func:`encode_sdf`).
    """
    n_volume = config.n_context + config.n_query_volume
    n_surface = config.n_condition + config.n_query_surface
    for pool, have, need in (
        ("volume", record.volume_points.shape[0], n_volume),
        ("near", record.near_points.shape[0], config.n_query_near),
        ("surface", record.surface_points.shape[0], n_surface),
    ):
        if have < need:
            raise ValueError(
                f"record {record.name or '(unnamed)'} has {have} {pool} points, the sample needs "
                f"{need}; prepare the data with more points or lower the sample sizes"
            )
    volume = rng.permutation(record.volume_points.shape[0])[:n_volume]
    near = rng.permutation(record.near_points.shape[0])[: config.n_query_near]
    surface = rng.permutation(record.surface_points.shape[0])[:n_surface]
    context, query_volume = volume[: config.n_context], volume[config.n_context :]
    query_surface = record.surface_points[surface[config.n_condition :]]
    query_points = np.concatenate([record.volume_points[query_volume], record.near_points[near], query_surface])
    query_sdf = np.concatenate([record.volume_sdf[query_volume], record.near_sdf[near], np.zeros(len(query_surface))])
    return {
        "context_points": record.volume_points[context].astype(np.float32),
        "context_values": encode_sdf(record.volume_sdf[context], config.truncation).astype(np.float32),
        "query_points": query_points.astype(np.float32),
        "query_values": encode_sdf(query_sdf, config.truncation).astype(np.float32),
        "surface_points": record.surface_points[surface[: config.n_condition]].astype(np.float32),
    }


# --------------------------------------------------------------------------------- noise --
def correlated_noise(points: Tensor, grid_res: int, generator: torch.Generator | None = None) -> Tensor:
    """Unit-variance spatially correlated noise at ``points`` ``(B, N, 3)`` -> ``(B, N)``.

    One ``grid_res^3`` grid of iid N(0, 1) per batch row (drawn from ``generator`` on the points'
    device), trilinearly interpolated (``grid_sample``, ``align_corners=True``: the nodes span
    ``[-1, 1]``) and divided by the interpolation's standard deviation. Points outside
    ``[-1, 1]^3`` take the value at the nearest boundary point.
    """
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (B, N, 3), got {tuple(points.shape)}")
    if int(grid_res) != grid_res or grid_res < 2:
        raise ValueError(f"grid_res must be an integer >= 2, got {grid_res!r}")
    if not torch.isfinite(points).all():
        raise ValueError("points contain NaN or inf")
    batch, n, _ = points.shape
    p = points.float().clamp(-1.0, 1.0)
    grid = torch.randn((batch, 1, grid_res, grid_res, grid_res), generator=generator, device=points.device)
    values = F.grid_sample(
        grid, p.view(batch, 1, 1, n, 3), mode="bilinear", padding_mode="border", align_corners=True
    ).view(batch, n)
    index = (p + 1.0) / 2.0 * (grid_res - 1)
    frac = index - index.floor()
    variance = ((1.0 - frac) ** 2 + frac**2).prod(dim=-1)
    return values / variance.sqrt()


# ------------------------------------------------------------------------------- batches --
@dataclass
class SdfBatch:
    """A batch of :func:`draw_sample` outputs as float32 tensors."""

    context_points: Tensor  # (B, Nc, 3)
    context_values: Tensor  # (B, Nc)
    query_points: Tensor  # (B, Nq, 3)
    query_values: Tensor  # (B, Nq)
    surface_points: Tensor  # (B, n_condition, 3)

    def cond(self, conditional: bool = True) -> dict[str, Tensor]:
        """The decoder's ``cond`` dict: context points, and the surface points when conditional."""
        out = {"context_points": self.context_points}
        if conditional:
            out["surface_points"] = self.surface_points
        return out

    def to(self, device: torch.device | str) -> SdfBatch:
        return SdfBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def sample_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of batch ``step`` (independent streams: SeedSequence spawn
    keys, which unlike entropy lists never collide through trailing zeros)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(step, index)))


def batch(
    step: int,
    batch_size: int,
    seed: int,
    source: str | RecordSource = "mixed",
    config: RepresentationConfig | None = None,
    rows: slice = slice(None),
) -> SdfBatch:
    """The training batch number ``step``: a pure function of its arguments (exact resume).

    ``source`` is a family name (:data:`~cfm_sdf.families.FAMILIES`: fresh analytic shapes) or a
    record source (e.g. ``SdfFolderDataset``: each sample picks a record uniformly, with
    replacement). Sample ``i`` uses ``sample_rng(seed, step, i)``, so ``rows`` builds exactly the
    samples at those positions of the batch and no others. Everything is on the CPU.
    """
    config = config or RepresentationConfig()
    for name, value in (("step", step), ("seed", seed)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(source, str) and source not in FAMILIES:
        raise ValueError(f"unknown shape family {source!r}; choose one of {FAMILIES}")
    if not isinstance(source, str) and len(source) == 0:
        raise ValueError("the record source is empty")
    samples = []
    for index in range(int(batch_size))[rows]:
        rng = sample_rng(int(seed), int(step), index)
        if isinstance(source, str):
            record = analytic_record(random_shape(source, rng), rng, config)
        else:
            record = source[int(rng.integers(len(source)))]
        samples.append(draw_sample(record, rng, config))
    return SdfBatch(**{key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in samples[0]})
