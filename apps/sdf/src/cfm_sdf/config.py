"""Configs of the SDF app's commands (typed dataclasses: ``--help`` shows every default)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

import tyro
from cfm_core.cli import ConfigError, require_positive
from cfm_core.cli.skeleton import EvalOptions, SampleOptions
from cfm_core.method import MethodConfig
from cfm_core.training import TrainConfig

from cfm_sdf.representation import RepresentationConfig

Family = Literal["table", "chair", "stool", "shelf", "mixed"]
Sampler = Literal["auto", "cumulative", "euler", "heun"]


def _finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value!r}")


@dataclass
class SdfNetConfig:
    """The SDF decoder (Functional-Diffusion style): a preset, with optional overrides."""

    preset: Literal["tiny", "small", "base"] = "small"
    """tiny: CPU tests (43 k parameters); small: CPU runs (0.3 M); base: GPU (FD's layout, 1/10)."""
    time_features: Literal["auto", "fourier", "sinusoidal"] = "auto"
    """Time features: auto = Fourier for edm (ln sigma / 4), sinusoidal otherwise."""
    width: int | None = None
    """Token width (default: the preset's)."""
    num_latents: int | None = None
    """Learned latent tokens (default: the preset's)."""
    stages: int | None = None
    """Context chunks, one cross-attention each (default: the preset's)."""

    def __post_init__(self) -> None:
        for name in ("width", "num_latents", "stages"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--net.{name.replace('_', '-')} must be positive, got {value}")


@dataclass
class SdfDataConfig:
    """Training shapes: a procedural family (unlimited fresh shapes) or a prepared mesh folder."""

    family: Family = "mixed"
    """Procedural family (analytic SDFs); ignored when --data.folder is given."""
    folder: str | None = None
    """A folder of .npz records written by `cfm sdf prepare` (replaces the family)."""
    n_context: int = 2048
    """Context points per shape: uniform in [-1, 1]^3, their SDF values are the generated state."""
    n_query_near: int = 1024
    """Near-surface training points per shape; they join the state (see apps/sdf/README.md)."""
    n_query_surface: int = 256
    """Surface training points per shape (value 0); they join the state too."""
    n_condition: int = 64
    """Surface points the model is conditioned on."""
    truncation: float = 0.2
    """Network values are clamp(sdf / truncation, -1, 1)."""
    noise_grid: int = 16
    """Nodes per axis of the noise grid (spatially correlated noise, as Functional Diffusion)."""

    def __post_init__(self) -> None:
        try:
            self.representation()
        except ValueError as err:
            raise ConfigError(f"--data: {err}") from None
        if self.noise_grid < 2:
            raise ConfigError(f"--data.noise-grid must be at least 2, got {self.noise_grid}")

    def representation(self, **query_sizes: int) -> RepresentationConfig:
        """The sample sizes: the training query points, or ``query_sizes`` (``n_query_volume``,
        ``n_query_near``, ``n_query_surface``) instead, e.g. for evaluation."""
        sizes = {
            "n_query_volume": 0,
            "n_query_near": self.n_query_near,
            "n_query_surface": self.n_query_surface,
            **query_sizes,
        }
        return RepresentationConfig(
            n_context=self.n_context,
            n_condition=self.n_condition,
            truncation=self.truncation,
            **sizes,
        )


#: The total derivative in CFM's target: the exact JVP. The core defaults to the finite difference,
#: which is robust to high-frequency time features; this app's network uses low-frequency ones,
#: which the JVP handles, and its benchmark section was recorded with the JVP (docs/design-notes.md,
#: "The finite-difference derivative by default").
CFM_DERIVATIVE = "jvp"


def _default_method() -> MethodConfig:
    return MethodConfig(formulation="x1", derivative=CFM_DERIVATIVE)


def _default_train() -> TrainConfig:
    # EMA warm-up: a plain 0.999 average still holds half of the initial weights after 700
    # steps, so short runs would look untrained
    return TrainConfig(
        steps=20000,
        batch_size=32,
        lr=3e-4,
        warmup_steps=500,
        ema_decays=(0.999,),
        ema_warmup_power=0.75,
        checkpoint_every=2000,
        sample_every=2000,
        log_every=50,
        output_dir="runs/sdf",
    )


@dataclass
class SdfTrainConfig:
    """Train a CFM (or, with --method.instantaneous-ratio 1, the multi-step baseline) that generates
    SDFs, conditioned on surface points (default) or unconditionally."""

    data: SdfDataConfig = field(default_factory=SdfDataConfig)
    net: SdfNetConfig = field(default_factory=SdfNetConfig)
    method: MethodConfig = field(default_factory=_default_method)
    train: TrainConfig = field(default_factory=_default_train)
    unconditional: bool = False
    """Generate shapes from noise alone (no surface points)."""

    def __post_init__(self) -> None:
        if self.unconditional and self.method.cond_dropout > 0:
            raise ConfigError(
                "--method.cond-dropout: an --unconditional model has no condition to drop; "
                "condition dropout trains a conditional model's unconditional mode (for "
                "--guidance and sampling without --points)"
            )


def _preset(base: SdfTrainConfig, steps: int, output_dir: str, ratio: float = 0.5, **train) -> SdfTrainConfig:
    return replace(
        base,
        method=replace(base.method, instantaneous_ratio=ratio),
        train=replace(
            base.train, steps=steps, output_dir=output_dir, checkpoint_every=steps, sample_every=steps, **train
        ),
    )


def _ddpm(base: SdfTrainConfig) -> SdfTrainConfig:
    """``base`` on DDPM's path with epsilon-prediction (the baseline Functional Diffusion trains)."""
    return replace(base, method=replace(base.method, formulation="ddim", formulation_options={"prediction": "epsilon"}))


_CPU = SdfTrainConfig(
    data=SdfDataConfig(n_context=1024, n_query_near=512, n_query_surface=128, noise_grid=12),
    net=SdfNetConfig(preset="small"),
    train=replace(_default_train(), batch_size=16, lr=1e-3, warmup_steps=100),
)
TRAIN_PRESETS = {
    "quick": _preset(_CPU, 3000, "runs/sdf-quick"),
    "quick-baseline": _preset(_CPU, 3000, "runs/sdf-quick-baseline", ratio=1.0),
    "quick-ddpm-baseline": _preset(_ddpm(_CPU), 3000, "runs/sdf-quick-ddpm-baseline", ratio=1.0),
    "base": _preset(
        replace(SdfTrainConfig(), net=SdfNetConfig(preset="base")),
        100000,
        "runs/sdf-base",
        batch_size=64,
    ),
    "base-baseline": _preset(
        replace(SdfTrainConfig(), net=SdfNetConfig(preset="base")),
        100000,
        "runs/sdf-base-baseline",
        ratio=1.0,
        batch_size=64,
    ),
    "base-ddpm-baseline": _preset(
        _ddpm(replace(SdfTrainConfig(), net=SdfNetConfig(preset="base"))),
        100000,
        "runs/sdf-base-ddpm-baseline",
        ratio=1.0,
        batch_size=64,
    ),
}


@dataclass(kw_only=True)
class SdfSampleConfig(SampleOptions):
    """Generate a shape (conditioned on surface points, or from noise alone) and mesh it: writes
    the mesh (.obj/.ply) and a PNG picture beside it."""

    points: str | None = None
    """Surface points to condition on: an .npy (N, 3) array or a mesh file (.obj .ply .stl .off)
    to sample them from. Leave out for an unconditional checkpoint, or to sample a checkpoint
    trained with --method.cond-dropout unconditionally."""
    n_points: int = 64
    """How many condition points to use (sampled from a mesh, or a random subset of the .npy)."""
    normalize: Literal["auto", "none", "bbox"] = "auto"
    """Frame of the points: none = already in the training frame (bounding box centred, longest
    half-extent 0.9); bbox = normalise their bounding box and map the mesh back; auto = bbox for
    meshes, none for .npy."""
    steps: int | None = None
    """Jumps (cumulative) or solver steps (euler/heun); default 1 (cumulative) or 64."""
    sampler: Sampler = "auto"
    """cumulative = CFM jumps; euler/heun = the r = t field, multi-step; auto = euler for a
    baseline checkpoint (trained with r = t only), cumulative otherwise."""
    resolution: int = 64
    """Marching-cubes grid nodes per axis over [-1, 1]^3."""
    guidance: float = 1.0
    """Classifier-free guidance scale (1: none; each step then costs two network calls); needs
    --points and a checkpoint trained with --method.cond-dropout > 0."""
    seed: int = 0
    """Seed of the noise (and of the point subset)."""
    out: str = "sdf-sample.obj"
    """Output mesh (.obj or .ply); the PNG is written beside it with the same stem."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive({"--n-points": self.n_points})
        if self.resolution < 8:
            raise ConfigError(f"--resolution must be at least 8, got {self.resolution}")
        _finite(guidance=self.guidance)


@dataclass(kw_only=True)
class SdfEvalConfig(EvalOptions):
    """Score generated shapes against the shapes of a procedural family (held out) or of a folder
    prepared by `cfm sdf prepare`, at several NFE: Chamfer distance, F-score, volumetric IoU, SDF
    error, and time per shape (network vs meshing).

    Writes metrics.json, shapes.png (ground truth | CFM at each step count | baseline at its
    largest) and quality_vs_nfe.png into --out.
    """

    cfm_steps: tuple[int, ...] = (1, 2, 4, 10)
    """Jump counts for CFM."""
    baseline_steps: tuple[int, ...] = (4, 10, 64)
    """Step counts for the baseline's instantaneous solver."""
    family: Family | None = None
    """Procedural family to score on (default: the checkpoint's training data)."""
    folder: str | None = None
    """A folder prepared by `cfm sdf prepare` to score on (its first --n-shapes records by name),
    e.g. a held-out split; default: the checkpoint's training data (a training folder is scored
    as it is, not held out: a note says so)."""
    n_shapes: int = 16
    """Shapes to score."""
    resolution: int = 64
    """Marching-cubes grid (and IoU grid) nodes per axis."""
    n_surface_samples: int = 10000
    """Points sampled on each mesh for Chamfer and F-score (on a folder: at most the records'
    surface points)."""
    fscore_threshold: float = 0.02
    """F-score distance threshold (the domain is [-1, 1]^3; shapes span 1.8)."""
    n_query: int = 4096
    """Points for the SDF error: half uniform in the volume, half near the surface."""
    batch_size: int = 8
    """Shapes generated together."""
    guidance: float = 1.0
    """Classifier-free guidance scale for every setting (1: none; needs checkpoints trained with
    --method.cond-dropout > 0)."""
    seed: int = 1234
    """Seed of the held-out shapes and the noise (never the training stream)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(
            {
                "--n-shapes": self.n_shapes,
                "--n-surface-samples": self.n_surface_samples,
                "--fscore-threshold": self.fscore_threshold,
                "--batch-size": self.batch_size,
            }
        )
        if self.n_query < 2:
            raise ConfigError(f"--n-query must be at least 2, got {self.n_query}")
        if self.resolution < 8:
            raise ConfigError(f"--resolution must be at least 8, got {self.resolution}")
        _finite(guidance=self.guidance)
        if self.family is not None and self.folder is not None:
            raise ConfigError("--family and --folder: give one source of shapes, not both")


@dataclass
class SdfPrepareConfig:
    """Turn a folder of meshes into SDF samples (one .npz per mesh, and report.json); broken meshes
    (not watertight, unreadable, empty) are reported and skipped."""

    mesh_folder: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="MESH_FOLDER")]
    """Folder of meshes (.obj .ply .stl .off; searched recursively)."""
    out: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """Output folder of .npz records (then train with --data.folder OUT)."""
    n_surface: int = 4096
    """Surface points per mesh (the pool the condition points are drawn from)."""
    n_volume: int = 16384
    """Uniform points in [-1, 1]^3 per mesh (the pool of context points)."""
    n_near: int = 16384
    """Near-surface points per mesh."""
    near_std: float = 0.02
    """Standard deviation of the near-surface offsets."""
    seed: int = 0
    """Seed of the sampling (per mesh, from its relative path)."""
    overwrite: bool = False
    """Recompute records that already exist (default: keep them, so a run resumes)."""

    def __post_init__(self) -> None:
        require_positive(
            {
                "--n-surface": self.n_surface,
                "--n-volume": self.n_volume,
                "--n-near": self.n_near,
                "--near-std": self.near_std,
            }
        )
