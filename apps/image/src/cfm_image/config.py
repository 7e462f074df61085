"""Configs of the image app's commands (typed dataclasses: ``--help`` shows every default)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cfm_core.cli import ConfigError, require_positive
from cfm_core.cli.skeleton import EvalOptions, SampleOptions
from cfm_core.method import MethodConfig
from cfm_core.training import TrainConfig

from cfm_image.unet import UNET_PRESETS

Formulation = Literal["u", "x1", "edm", "ddim"]
DEFAULT_FORMULATION: Formulation = "u"
"""The default formulation (docs/design-notes.md, "Formulation defaults per app", says why)."""
COND_DROPOUT = 0.1
"""Default share of training rows trained with the null class (classifier-free guidance)."""


#: The total derivative in CFM's target: the exact JVP. The core defaults to the finite difference,
#: which is robust to high-frequency time features; this app's network uses low-frequency ones,
#: which the JVP handles, and its benchmark section was recorded with the JVP (docs/design-notes.md,
#: "The finite-difference derivative by default").
CFM_DERIVATIVE = "jvp"


@dataclass
class ImageDataConfig:
    """Where the training images come from: a built-in dataset, an image folder, or shards.

    ``train`` resolves resolution, channels and num_classes from the data and stores the resolved
    values in every checkpoint, so sampling never needs the data.
    """

    builtin: Literal["digits", "faces"] = "digits"
    """Built-in dataset, used unless --data.folder or --data.shards is given: digits (1,797
    labelled handwritten digits, scikit-learn) or faces (100 unlabelled crops, scikit-image)."""
    folder: str | None = None
    """A folder of PNG/JPEG images (searched recursively)."""
    shards: str | None = None
    """WebDataset .tar shards: a folder of them, a path or a brace pattern, e.g.
    data/shard-{000000..000009}.tar (`cfm image pack` writes them and a meta.json)."""
    labels: bool = False
    """folder: class labels from the sub-folder names; shards: read each sample's cls entry.
    (The built-in digits always carry labels.)"""
    unconditional: bool = False
    """Ignore the labels of labelled data: train without class conditioning."""
    resolution: int | None = None
    """Side of the square images (default: 16 digits, 32 faces, the shards' meta.json, else 32)."""
    channels: Literal[1, 3] | None = None
    """1 (grey) or 3 (RGB); default: 1 for built-in data, the shards' meta.json, else 3."""
    num_classes: int | None = None
    """Number of classes; found from the data, needed for labelled shards without meta.json."""
    shuffle_buffer: int = 1000
    """Shards: samples in the shuffle buffer (0: read in order)."""

    def __post_init__(self) -> None:
        if self.folder is not None and self.shards is not None:
            raise ConfigError("give --data.folder or --data.shards, not both")
        if self.is_builtin and self.channels == 3:
            raise ConfigError(f"data.channels: the built-in {self.builtin} images are grey (1)")
        require_positive({"--data.resolution": self.resolution, "--data.num-classes": self.num_classes}, integer=True)
        if self.shuffle_buffer < 0:
            raise ConfigError(f"data.shuffle_buffer must be >= 0, got {self.shuffle_buffer}")

    @property
    def is_builtin(self) -> bool:
        """True when the images come from a built-in dataset."""
        return self.folder is None and self.shards is None

    @property
    def name(self) -> str:
        """A short name of the source for titles."""
        return self.builtin if self.is_builtin else str(self.folder or self.shards)


@dataclass
class ImageNetConfig:
    """The two-time UNet: a named preset, then any of the overrides below."""

    preset: Literal["micro", "tiny", "small", "cifar"] = "tiny"
    """micro ~0.2M parameters (CPU quick preset), tiny ~0.8M, small ~7M, cifar ~39M (DDPM's)."""
    base_channels: int | None = None
    """Width of the first level (default: the preset's)."""
    channel_mults: tuple[int, ...] | None = None
    """Width multiplier per level; each level after the first halves the resolution."""
    num_res_blocks: int | None = None
    """Residual blocks per level."""
    attention_resolutions: tuple[int, ...] | None = None
    """Feature resolutions with self-attention (the middle always has it)."""
    num_heads: int | None = None
    """Attention heads."""
    dropout: float | None = None
    """Dropout inside the residual blocks."""
    time_embedding: Literal["auto", "sinusoidal", "fourier"] = "auto"
    """Time features: auto = Fourier for edm (ln sigma / 4), sinusoidal otherwise."""

    def __post_init__(self) -> None:
        if self.preset not in UNET_PRESETS:
            raise ConfigError(f"net.preset: unknown {self.preset!r}; choose {sorted(UNET_PRESETS)}")

    def overrides(self) -> dict[str, Any]:
        """The architecture options set on the command line (``None`` means the preset's)."""
        names = ("base_channels", "channel_mults", "num_res_blocks", "attention_resolutions", "num_heads", "dropout")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class ImageTrainConfig:
    """Train CFM (or, with --method.instantaneous-ratio 1, the multi-step baseline) on images.

    Warm start (the paper's self-distillation mode): train the baseline first, then CFM from
    its weights with --train.init-from BASELINE_RUN (same data, net and formulation).
    """

    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    net: ImageNetConfig = field(default_factory=ImageNetConfig)
    method: MethodConfig = field(
        default_factory=lambda: MethodConfig(
            formulation=DEFAULT_FORMULATION, cond_dropout=COND_DROPOUT, derivative=CFM_DERIVATIVE
        )
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            steps=20000,
            batch_size=128,
            lr=1e-3,
            warmup_steps=200,
            ema_decays=(0.999,),
            ema_warmup_power=0.75,
            checkpoint_every=2000,
            sample_every=2000,
            log_every=100,
            output_dir="runs/image",
        )
    )


def _preset(
    *,
    data: ImageDataConfig | None = None,
    net: str,
    train: dict[str, Any],
    method: dict[str, Any] | None = None,
) -> ImageTrainConfig:
    base = ImageTrainConfig()
    return replace(
        base,
        data=data or base.data,
        net=ImageNetConfig(preset=net),
        method=replace(base.method, **(method or {})),
        train=replace(base.train, **train),
    )


QUICK_STEPS = 1500
"""Training steps of the quick preset (the demo's run: minutes on a CPU)."""

_QUICK_TRAIN = dict(
    steps=QUICK_STEPS,
    batch_size=64,
    lr=2e-3,
    warmup_steps=100,
    checkpoint_every=QUICK_STEPS,
    sample_every=500,
    log_every=50,
)

TRAIN_PRESETS = {
    # The README's main job: 16x16 digits, the micro UNet, a few minutes on a CPU.
    "quick": _preset(net="micro", train=dict(_QUICK_TRAIN, output_dir="runs/image-quick")),
    # The multi-step baseline of quick (r = t only): the warm start of --train.init-from.
    "quick-baseline": _preset(
        net="micro",
        method=dict(instantaneous_ratio=1.0),
        train=dict(_QUICK_TRAIN, output_dir="runs/image-quick-baseline"),
    ),
    # Longer digits run with the tiny UNet (hours on a CPU, minutes on a GPU).
    "digits": _preset(net="tiny", train=dict(steps=20000, output_dir="runs/image-digits")),
    # The 100 built-in face crops at 32x32.
    "faces": _preset(
        data=ImageDataConfig(builtin="faces"), net="tiny", train=dict(steps=20000, output_dir="runs/image-faces")
    ),
    # DDPM's CIFAR-10 UNet for 32x32 RGB data you bring (--data.folder or --data.shards), on a GPU.
    "cifar": _preset(
        data=ImageDataConfig(resolution=32),
        net="cifar",
        train=dict(
            steps=400000,
            batch_size=128,
            lr=2e-4,
            warmup_steps=5000,
            ema_decays=(0.9999,),
            ema_warmup_power=0.0,
            mixed_precision="bf16",
            checkpoint_every=10000,
            sample_every=10000,
            output_dir="runs/image-cifar",
        ),
    ),
}


@dataclass(kw_only=True)
class ImageSampleConfig(SampleOptions):
    """Sample a trained image model: a PNG grid and/or one PNG per image."""

    n: int = 64
    """Number of images."""
    labels: tuple[int, ...] | None = None
    """Class labels, repeated to --n (class-conditional models; default: 0, 1, 2, ... in turn)."""
    unconditional: bool = False
    """Sample the null class of a class-conditional model (trained with label dropout)."""
    guidance: float = 1.0
    """Classifier-free guidance weight (1 = none; needs a class-conditional model)."""
    grid: str | None = "image-samples.png"
    """Output PNG grid (None: no grid)."""
    nrow: int | None = None
    """Images per grid row (default: the number of classes, else about sqrt(n))."""
    individual_dir: str | None = None
    """Also write one PNG per image into this folder (00000.png, ...)."""
    batch_size: int = 256
    """Images per sampling batch."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive({"--n": self.n, "--batch-size": self.batch_size, "--nrow": self.nrow}, integer=True)
        if self.grid is None and self.individual_dir is None:
            raise ConfigError("nothing to write: give --grid and/or --individual-dir")
        if self.labels is not None and self.unconditional:
            raise ConfigError("give --labels or --unconditional, not both")
        if self.labels is not None and (not self.labels or min(self.labels) < 0):
            raise ConfigError(f"--labels must be non-negative class indices, got {self.labels}")


@dataclass(kw_only=True)
class ImageEvalConfig(EvalOptions):
    """Score a trained image model at several NFE against its data.

    Metrics: for the built-in digits, a small CNN digit classifier (trained once on the training
    split, cached) gives the Frechet distance in its feature space, its accuracy on the generated
    digits (class-conditional models) and the class entropies; for every dataset, the energy
    distance in pixel space; FID (torchmetrics) only with --fid-weights, a local Inception file:
    nothing is downloaded. Writes metrics.json, samples.png, quality_vs_nfe.png and one grid per
    run (grids/) into --out.
    """

    n: int = 1000
    """Generated images per run."""
    guidance: float = 1.0
    """Classifier-free guidance weight of every run (class-conditional models)."""
    batch_size: int = 500
    """Images per sampling batch."""
    fid_weights: str | None = None
    """FID against the reference images (the training split of built-in data) with this local
    Inception-v3 file: torch-fidelity's weights-inception-2015-12-05-6726825d.pth. Nothing is
    downloaded: without it FID is skipped, and the output says so. The file must be the published
    one (its SHA-256 is checked before it is read)."""
    allow_unverified_fid_weights: bool = False
    """Accept a --fid-weights file that is not the published one. Risk: such a file may be a
    crafted pickle, so it is read only as plain tensors (which refuses code), and FIDs from other
    weights compare with no published number."""
    classifier_cache: str | None = None
    """Folder caching the digit classifier (default: $CFM_CACHE_DIR, else ~/.cache/cfm)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 10:
            raise ConfigError(f"--n must be at least 10, got {self.n}")
        require_positive({"--batch-size": self.batch_size}, integer=True)


@dataclass
class ImageDemoConfig:
    """The main job, a few minutes on a CPU: train CFM on the built-in 16x16 digits (the quick
    preset), then sample it at 1, 2 and 4 steps and the multi-step baseline at --baseline-steps,
    all from the same noise, and score every run.

    Writes into --out: cfm/, the training run with its checkpoint, log.jsonl and samples/;
    eval/metrics.json, every score and which baseline; eval/grids/cfm-1.png, cfm-2.png,
    cfm-4.png and baseline-euler-<steps>.png, one grid per run with one column per digit;
    eval/samples.png, held-out digits beside CFM at 1, 2, 4 steps and the baseline; and
    eval/quality_vs_nfe.png.
    """

    out: str = "runs/image-demo"
    """Output folder: cfm/ (and baseline/), eval/."""
    formulation: Formulation = DEFAULT_FORMULATION
    """Formulation of the model(s)."""
    steps: int = QUICK_STEPS
    """Training steps of each model."""
    baseline: Literal["own-field", "trained"] = "own-field"
    """own-field: the baseline is the CFM model's own r = t field (fast); trained: also train a
    multi-step model (ratio 1.0) with the same net and budget (twice the time)."""
    n: int = 500
    """Generated images per evaluated run."""
    baseline_steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    """Step counts of the baseline's solver."""
    seed: int = 0
    """Training seed."""
    classifier_cache: str | None = None
    """Folder caching the digit classifier (default: $CFM_CACHE_DIR, else ~/.cache/cfm)."""
    fid_weights: str | None = None
    """Also report FID, with this local Inception-v3 file (see cfm image eval --help); checked
    before training."""
    allow_unverified_fid_weights: bool = False
    """Accept a --fid-weights file that is not the published one, read as plain tensors only (see
    cfm image eval --help)."""

    def __post_init__(self) -> None:
        require_positive({"--steps": self.steps}, integer=True)
        if self.n < 10:
            raise ConfigError(f"--n must be at least 10, got {self.n}")
