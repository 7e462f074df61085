"""Configs of ``cfm geometry train | sample | eval`` (typed dataclasses: ``--help`` shows every
default) and the training presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from cfm_core.cli import ConfigError, require_positive
from cfm_core.cli.skeleton import EvalOptions, SampleOptions
from cfm_core.method import MethodConfig
from cfm_core.training import TrainConfig

BuiltinShapeName = Literal["torus_knot", "lattice", "saddle", "open_cylinder", "sphere", "blob"]
Backbone = Literal["point_mlp", "point_transformer"]
UpAxis = Literal["auto", "x", "y", "z"]
#: GD's data are normalised to unit variance, so EDM's sigma_data is 1 (EDM's own default: 0.5).
EDM_SIGMA_DATA = 1.0
#: Share of each training batch with r = t for CFM (the paper: 0.5; MeanFlow's choice, 0.75, here;
#: docs/design-notes.md, "Geometry's network defaults", says why).
CFM_INSTANTANEOUS_RATIO = 0.75
#: The instantaneous field inside CFM's cumulative target: the network's own r = t output, which
#: carries no data noise (docs/design-notes.md, "The model's own field in the target").
CFM_TARGET_FIELD = "model"
#: The total derivative in CFM's target: the exact JVP. The core's default, the finite difference,
#: scored worse on the torus knot (docs/design-notes.md, "Not adopted: geometry one-step variants");
#: this app's time features are low-frequency (Fourier scale 1), which the JVP handles.
CFM_DERIVATIVE = "jvp"
#: Learning-rate schedule after the warm-up (GD's: half cosine).
LR_SCHEDULE = "cosine"


@dataclass
class GeometryNetConfig:
    """The network: GD's per-point MLP (points never interact) or a set transformer."""

    backbone: Backbone = "point_mlp"
    """point_mlp: GD's per-point network; point_transformer: sets of points attend to each other."""
    width: int = 512
    """Hidden width (point_mlp) or token width (point_transformer); GD: 512."""
    depth: int = 6
    """Residual blocks (point_mlp) or transformer blocks; GD: 6."""
    heads: int = 8
    """Attention heads (point_transformer only)."""
    set_size: int = 256
    """Points per set (point_transformer only); the batch size must be a multiple of it."""
    fourier_levels: int = 2
    """Point features sin/cos(2^k pi x) for k < fourier_levels (GD: 8; 0: raw coordinates). High
    frequencies give the cumulative target's d_x m term a huge Jacobian (docs/design-notes.md)."""
    time_embedding: Literal["auto", "fourier", "sinusoidal"] = "auto"
    """Time features: auto = Fourier for edm (ln sigma / 4), sinusoidal otherwise."""

    def __post_init__(self) -> None:
        require_positive(
            {
                "--net.width": self.width,
                "--net.depth": self.depth,
                "--net.heads": self.heads,
                "--net.set-size": self.set_size,
            }
        )
        if self.fourier_levels < 0:
            raise ConfigError(f"net.fourier_levels must be >= 0, got {self.fourier_levels}")
        if self.backbone == "point_transformer" and self.width % self.heads:
            raise ConfigError(f"net.width ({self.width}) must be divisible by net.heads ({self.heads})")


def _edm_method(**options) -> MethodConfig:
    return MethodConfig(
        formulation="edm",
        **{
            "instantaneous_ratio": CFM_INSTANTANEOUS_RATIO,
            "target_field": CFM_TARGET_FIELD,
            "derivative": CFM_DERIVATIVE,
            **options,
        },
    )


def with_app_defaults(method: MethodConfig) -> MethodConfig:
    """``method`` with this app's formulation defaults filled in: edm's ``sigma_data`` is 1
    (the data are normalised to unit variance) unless --method.formulation-options sets it."""
    if method.formulation != "edm" or "sigma_data" in method.formulation_options:
        return method
    options = {"sigma_data": EDM_SIGMA_DATA, **method.formulation_options}
    return replace(method, formulation_options=options)


@dataclass
class GeometryTrainConfig:
    """Train a CFM (or, with --method.instantaneous-ratio 1, the multi-step baseline) on one shape.

    The network learns the shape as a distribution of surface points (Geometry Distributions):
    --points surface samples are drawn once, normalised to unit variance (the transform is stored
    in the checkpoint and undone on output), and every step draws a batch from them.
    """

    mesh: str | None = None
    """A mesh (OBJ PLY STL OFF GLB GLTF) or point cloud (PLY XYZ NPY NPZ); default: --shape."""
    shape: BuiltinShapeName = "torus_knot"
    """The built-in shape to learn when no --mesh is given (torus_knot: a thin tube)."""
    points: int = 1 << 22
    """Surface samples drawn once (GD: 2^25)."""
    data_seed: int = 0
    """Seed of the surface samples."""
    preview_points: int = 20000
    """Points of the training previews (Chamfer in the log, PNG of 1-step points; 0: none)."""
    up_axis: UpAxis = "auto"
    """Which axis points up in pictures: auto = z for built-in shapes, y for files."""
    net: GeometryNetConfig = field(default_factory=GeometryNetConfig)
    method: MethodConfig = field(default_factory=_edm_method)
    """The method; edm's sigma_data defaults to 1 here (unit-variance data)."""
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            steps=50_000,
            batch_size=1 << 16,
            lr=1e-3,
            warmup_steps=1000,
            lr_schedule=LR_SCHEDULE,
            ema_decays=(0.9999,),
            ema_warmup_power=2 / 3,
            checkpoint_every=5000,
            sample_every=5000,
            log_every=100,
            output_dir="runs/geometry",
        )
    )

    def __post_init__(self) -> None:
        require_positive({"--points": self.points})
        if self.preview_points < 0:
            raise ConfigError(f"preview_points must be >= 0, got {self.preview_points}")
        if self.net.backbone == "point_transformer" and self.train.batch_size % self.net.set_size:
            raise ConfigError(
                f"train.batch_size ({self.train.batch_size}) must be a multiple of "
                f"net.set_size ({self.net.set_size}) for the point transformer"
            )

    @property
    def surface_spec(self) -> str:
        """The mesh file, or the built-in shape's name."""
        return self.mesh if self.mesh is not None else self.shape


def _preset(
    points: int, net: GeometryNetConfig, output_dir: str, method: MethodConfig | None = None, **train
) -> GeometryTrainConfig:
    base = GeometryTrainConfig()
    return replace(
        base,
        points=points,
        net=net,
        method=method or _edm_method(),
        train=replace(base.train, output_dir=output_dir, **train),
    )


_QUICK_NET = GeometryNetConfig(width=128, depth=3)
_QUICK_TRAIN = {
    "steps": 2000,
    "batch_size": 2048,
    "lr": 2e-3,
    "warmup_steps": 100,
    "ema_decays": (0.999,),
    "ema_warmup_power": 0.75,
    "checkpoint_every": 1000,
    "sample_every": 1000,
    "log_every": 50,
}

TRAIN_PRESETS = {
    # A few minutes on a laptop CPU: a 128 x 3 per-point MLP, 2000 steps of 2048 points.
    "quick": _preset(1 << 18, _QUICK_NET, "runs/geometry-quick", **_QUICK_TRAIN),
    # The multi-step EDM baseline of `quick` (same network and budget, every row at r = t).
    "quick-baseline": _preset(
        1 << 18, _QUICK_NET, "runs/geometry-quick-baseline", _edm_method(instantaneous_ratio=1.0), **_QUICK_TRAIN
    ),
    # Geometry Distributions' size: 512 x 6 MLP, 2^25 surface samples, 2^18 points per step and
    # lr 1e-3 (GD on one GPU); GD trains 512k steps, raise --train.steps to match. bf16 autocast
    # (the derivative pass stays float32): within the seed noise of float32 in the precision benchmark.
    "gd": _preset(
        1 << 25,
        GeometryNetConfig(),
        "runs/geometry-gd",
        steps=100_000,
        batch_size=1 << 18,
        lr=1e-3,
        mixed_precision="bf16",
        warmup_steps=512,
        ema_decays=(0.9999,),
        checkpoint_every=10_000,
        sample_every=10_000,
        log_every=100,
    ),
}


@dataclass(kw_only=True)
class GeometrySampleConfig(SampleOptions):
    """Generate a point cloud from a trained shape model, in the shape's original units."""

    steps: int = 1
    """Number of jumps (cumulative) or solver steps (euler; heun costs 2 steps - 1 NFE)."""
    points: int = 1_000_000
    """Number of points to generate."""
    out: str = "geometry-samples.ply"
    """Output point cloud (.ply, .npy, .npz or .xyz)."""
    npy: bool = False
    """Also write an NPY (float32, N x 3) beside --out."""
    png: bool = False
    """Also write a PNG of the cloud from several views beside --out."""
    batch_size: int | None = None
    """Points generated per network batch (default: 2^18 on a GPU, 2^12 on the CPU)."""
    up_axis: UpAxis = "auto"
    """Which axis points up in the PNG (auto: the training run's choice)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive({"--points": self.points, "--batch-size": self.batch_size})


@dataclass(kw_only=True)
class GeometryEvalConfig(EvalOptions):
    """Score a trained shape model (and a multi-step baseline) against dense surface samples.

    At every NFE: the two-sided Chamfer distance (the summed GD form and the 0.5-averaged form) in
    the shape's original units, in GD's normalised-mesh units (bounding box centred, largest
    |coordinate| 0.99) and in the unit-variance units the network learns in; the F-score at
    --f-threshold; the Hausdorff distance. Then the jump gap: how far one CFM jump to the data end
    lands from the same network's own ODE (its r = t field, 64 Heun steps) when both start on that
    ODE's trajectory at unit times 0, 0.25, 0.5 and 0.75 (0 = the noise end), in box units: where
    the gap opens tells which jumps are not learnt yet. Writes metrics.json, samples.png
    (reference, CFM 1 step, baseline at NFE 1 and at its largest NFE) and quality_vs_nfe.png into
    --out.
    """

    points: int = 100_000
    """Points generated per run."""
    reference_points: int | None = None
    """Dense surface samples of the input to score against (default: --points)."""
    reference: str | None = None
    """Score against this mesh / point cloud instead of the one the run was trained on."""
    cfm_steps: tuple[int, ...] = (1, 2, 3, 6)
    """Jump counts for CFM (NFE = jumps)."""
    baseline_steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    """Step counts of the baseline's solver (Heun: NFE = 2 steps - 1, so NFE 1 to 63)."""
    baseline_method: Literal["auto", "euler", "heun"] = "auto"
    """The baseline's solver: auto = heun for edm (GD's sampler), euler otherwise."""
    f_threshold: float = 0.01
    """F-score distance threshold, as a fraction of the shape's bounding-box diagonal."""
    batch_size: int | None = None
    """Points generated per network batch (default: 2^18 on a GPU, 2^12 on the CPU)."""
    gap_points: int = 10_000
    """Noise points of the jump-gap diagnostic (one jump to the data end vs the CFM model's own
    64-step ODE, from several start times; per-point networks only; 0: skip)."""
    seed: int = 1234
    """Seed of the noise and of the reference samples (never the training samples)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gap_points < 0:
            raise ConfigError(f"--gap-points must be >= 0, got {self.gap_points}")
        require_positive(
            {
                "--points": self.points,
                "--f-threshold": self.f_threshold,
                "--batch-size": self.batch_size,
                "--reference-points": self.reference_points,
            }
        )
        if self.f_threshold >= 1:
            raise ConfigError(
                f"--f-threshold is a fraction of the bounding-box diagonal and must be below 1, got {self.f_threshold}"
            )
