"""Configs of the toy app's commands (typed dataclasses: ``--help`` shows every default)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from cfm_core.cli.app import ConfigError
from cfm_core.cli.skeleton import EvalOptions, SampleOptions
from cfm_core.method import MethodConfig
from cfm_core.training import TrainConfig

Distribution = Literal["checkerboard", "eight_gaussians", "two_moons", "spirals", "gaussian_mixture"]


@dataclass
class ToyNetConfig:
    """The two-time MLP."""

    hidden: int = 256
    """Width of the MLP."""
    depth: int = 4
    """Number of residual blocks."""
    time_embedding: Literal["auto", "sinusoidal", "fourier"] = "fourier"
    """Time features: fourier = low-frequency Fourier features, the toy's default for every
    formulation; auto = the apps' rule (Fourier for edm, sinusoidal otherwise)."""
    fourier_levels: int = 3
    """Octaves of the point features sin/cos(2^k pi x) (0: raw coordinates; docs/design-notes.md,
    "Point features for the toy MLP")."""

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.depth < 1:
            raise ConfigError(f"net.hidden and net.depth must be positive, got {self.hidden}, {self.depth}")
        if self.fourier_levels < 0:
            raise ConfigError(f"net.fourier_levels must be >= 0, got {self.fourier_levels}")


def toy_method(**options) -> MethodConfig:
    """The toy app's method defaults: the core's, with minibatch-OT coupling (docs/design-notes.md,
    "Minibatch-OT coupling for the toys")."""
    return MethodConfig(**{"coupling": "minibatch_ot", **options})


@dataclass
class ToyTrainConfig:
    """Train a CFM (or, with --method.instantaneous-ratio 1, the multi-step baseline) on a 2-D toy."""

    data: Distribution = "checkerboard"
    """The 2-D distribution to learn."""
    net: ToyNetConfig = field(default_factory=ToyNetConfig)
    method: MethodConfig = field(default_factory=toy_method)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            steps=3000,
            batch_size=512,
            lr=1e-3,
            warmup_steps=100,
            ema_decays=(0.999,),
            # EMA warm-up: without it a 0.999 average still holds 22% of the initial weights after
            # 1500 steps and 5% after 3000 (docs/design-notes.md, "EMA warm-up")
            ema_warmup_power=0.75,
            checkpoint_every=1000,
            log_every=100,
            output_dir="runs/toy",
        )
    )


def _preset(steps: int, output_dir: str, **method) -> ToyTrainConfig:
    base = ToyTrainConfig()
    return replace(
        base,
        method=toy_method(**method),
        train=replace(base.train, steps=steps, output_dir=output_dir),
    )


TRAIN_PRESETS = {
    "quick": _preset(1500, "runs/toy-quick"),
    "baseline": _preset(3000, "runs/toy-baseline", instantaneous_ratio=1.0),
    "cfm-edm": _preset(3000, "runs/toy-edm", formulation="edm", formulation_options={"sigma_data": 1.0}),
}


@dataclass(kw_only=True)
class ToySampleConfig(SampleOptions):
    """Draw samples from a trained toy model and save them as NPY (and a PNG scatter plot)."""

    n: int = 5000
    """Number of samples."""
    out: str = "toy-samples.npy"
    """Output NPY file (a PNG with the same stem is written beside it)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 1:
            raise ConfigError(f"--n must be positive, got {self.n}")


@dataclass(kw_only=True)
class ToyEvalConfig(EvalOptions):
    """Score a trained toy model against held-out samples of its distribution, at several NFE.

    Writes metrics.json, samples.png (data | CFM at each step count | baseline at its largest
    step count) and quality_vs_nfe.png into --out.
    """

    n: int = 5000
    """Samples per run, and held-out data samples."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 10:
            raise ConfigError(f"--n must be at least 10, got {self.n}")


@dataclass
class ToyDemoConfig:
    """The main job: train CFM and its multi-step baseline on a toy side by side, then evaluate both."""

    data: Distribution = "checkerboard"
    formulation: Literal["u", "x1", "edm", "ddim"] = "u"
    """Formulation of both models."""
    steps: int = 1500
    """Training steps of each model."""
    out: str = "runs/toy-demo"
    """Output folder: cfm/, baseline/ and eval/ inside it."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"--steps must be positive, got {self.steps}")
