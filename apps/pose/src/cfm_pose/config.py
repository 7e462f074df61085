"""Configs of the pose app's commands (typed dataclasses: ``--help`` shows every default).

The data kind decides what the model generates (see :mod:`cfm_pose.encoding`):

* ``--data procedural --procedural.template mixed`` (default): characters of every template, so the
  skeletons differ in joint count: **per-point** (PDT-style) targets, joints by mean shift.
* ``--data procedural --procedural.template biped`` (or another template): one joint layout:
  **fixed-topology** vector of the template's joints.
* ``--data smpl``: SMPL's 24 joints or SMPL-X's 55 (by the model file): **fixed-topology** vector.
* ``--data rignet``: rigs of any layout: **per-point** targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

import tyro
from cfm_core.cli import require_positive
from cfm_core.cli.app import ConfigError
from cfm_core.cli.skeleton import EvalOptions, SampleOptions
from cfm_core.method import MethodConfig
from cfm_core.training import TrainConfig

DataKind = Literal["procedural", "smpl", "rignet"]
ModelType = Literal["auto", "smpl", "smplx"]
Template = Literal["mixed", "biped", "quadruped", "tailed_biped", "four_armed_biped"]
RigNetSplit = Literal["train", "val", "test", "all"]


#: The total derivative in CFM's target: the exact JVP. The core defaults to the finite difference,
#: which is robust to high-frequency time features; this app's network uses low-frequency ones,
#: which the JVP handles, and its benchmark section was recorded with the JVP (docs/design-notes.md,
#: "The finite-difference derivative by default").
CFM_DERIVATIVE = "jvp"


@dataclass
class ProceduralConfig:
    """Procedural capsule characters (random templates, proportions and poses), generated on
    the fly."""

    template: Template = "mixed"
    """mixed: every template (variable topology, per-point); a name: that one (fixed topology)."""


@dataclass
class SmplConfig:
    """SMPL or SMPL-X bodies posed by smplx: random shapes and poses, or poses from a motion
    file."""

    model: str | None = None
    """SMPL or SMPL-X .pkl/.npz (chumpy pickles too), or a folder with SMPL_<GENDER>.pkl or SMPLX_<GENDER>.npz."""
    model_type: ModelType = "auto"
    """auto: detect (24 joints SMPL, 55 SMPL-X; the run saves it); smpl/smplx: require that family."""
    motion: str | None = None
    """AMASS-style .npz with 'poses' (and 'betas') to draw poses from; default: random poses."""
    gender: Literal["neutral", "female", "male"] = "neutral"
    """Picks the <GENDER> file when --smpl.model is a folder."""
    num_betas: int = 10
    """Shape parameters used."""
    beta_std: float = 1.0
    """Spread of the random shape parameters."""
    pose_std: float = 0.2
    """Spread (radians) of each random axis-angle component of the body pose."""

    def __post_init__(self) -> None:
        if self.num_betas < 1:
            raise ConfigError(f"--smpl.num-betas must be at least 1, got {self.num_betas}")
        for name, value in (("beta-std", self.beta_std), ("pose-std", self.pose_std)):
            if value < 0:
                raise ConfigError(f"--smpl.{name} must not be negative, got {value}")


@dataclass
class RigNetConfig:
    """A ModelsResource-RigNetv1 folder (obj/, rig_info/, *_final.txt split lists)."""

    root: str | None = None
    """The RigNet folder."""
    split: RigNetSplit = "train"
    """Training characters: a split list (<split>_final.txt) or all rig files."""
    eval_split: RigNetSplit = "test"
    """Held-out characters for `cfm pose eval` and the training previews."""
    mesh_dir: str = "obj"
    """Mesh subfolder (obj or obj_remesh)."""
    rig_dir: str = "rig_info"
    """Rig subfolder (rig_info or rig_info_remesh)."""


@dataclass
class PoseNetConfig:
    """The PoseMLP backbone: a PointNet code of the input points and a time-modulated residual
    MLP (the time features follow the formulation: Fourier for edm, sinusoidal otherwise)."""

    hidden: int = 256
    """Width of the residual MLP."""
    depth: int = 4
    """Residual blocks."""
    time_dim: int = 128
    """Width of the two-time embedding (even)."""
    code_dim: int = 256
    """Size of the point-cloud code."""
    encoder_hidden: int = 128
    """Width of the PointNet encoder."""
    encoder_depth: int = 3
    """Layers of the PointNet encoder."""
    fourier_levels: int = 6
    """Sin/cos octaves of the point coordinates."""

    def __post_init__(self) -> None:
        require_positive(
            {
                "--net.hidden": self.hidden,
                "--net.depth": self.depth,
                "--net.time-dim": self.time_dim,
                "--net.code-dim": self.code_dim,
                "--net.encoder-hidden": self.encoder_hidden,
                "--net.encoder-depth": self.encoder_depth,
            }
        )
        if self.time_dim % 2:
            raise ConfigError(f"--net.time-dim must be even, got {self.time_dim}")
        if self.fourier_levels < 0:
            raise ConfigError(f"--net.fourier-levels must not be negative, got {self.fourier_levels}")


@dataclass
class PoseTrainConfig:
    """Train a CFM (or, with --method.instantaneous-ratio 1, the multi-step baseline) to predict
    skeleton joints from a shape's surface points."""

    data: DataKind = "procedural"
    """procedural (built in), smpl (SMPL or SMPL-X bodies; needs --smpl.model) or rignet (needs
    --rignet.root)."""
    n_points: int = 1024
    """Surface points per shape: the condition (and, per point, the generated points)."""
    data_scale: float = 4.0
    """Generated coordinates: (p - (0, 0.5, 0)) * data_scale, p in the unit-box shape frame."""
    pdt_rule: Literal["bone", "joint"] = "bone"
    """Per-point target: the nearer end of the nearest bone, or the nearest joint."""
    procedural: ProceduralConfig = field(default_factory=ProceduralConfig)
    smpl: SmplConfig = field(default_factory=SmplConfig)
    rignet: RigNetConfig = field(default_factory=RigNetConfig)
    net: PoseNetConfig = field(default_factory=PoseNetConfig)
    method: MethodConfig = field(default_factory=lambda: MethodConfig(formulation="ddim", derivative=CFM_DERIVATIVE))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            steps=3000,
            batch_size=16,
            lr=1e-3,
            warmup_steps=100,
            ema_decays=(0.999,),
            ema_warmup_power=0.75,
            checkpoint_every=1000,
            log_every=50,
            sample_every=1000,
            output_dir="runs/pose",
        )
    )

    def __post_init__(self) -> None:
        if self.n_points < 16:
            raise ConfigError(f"--n-points must be at least 16, got {self.n_points}")
        require_positive({"--data-scale": self.data_scale})
        if self.data == "smpl" and not self.smpl.model:
            raise ConfigError("--data smpl needs --smpl.model PATH (an SMPL or SMPL-X .pkl/.npz, or a folder)")
        if self.data == "rignet" and not self.rignet.root:
            raise ConfigError("--data rignet needs --rignet.root PATH (a RigNet folder)")


def _preset(steps: int, output_dir: str, template: Template = "mixed", **method) -> PoseTrainConfig:
    base = PoseTrainConfig(procedural=ProceduralConfig(template))
    return replace(
        base,
        method=MethodConfig(**{"formulation": "ddim", "derivative": CFM_DERIVATIVE, **method}),
        train=replace(base.train, steps=steps, output_dir=output_dir),
    )


TRAIN_PRESETS = {
    "quick": replace(
        _preset(600, "runs/pose-quick"),
        n_points=512,
        net=PoseNetConfig(hidden=128, depth=3, code_dim=128, encoder_hidden=64),
    ),
    "baseline": _preset(3000, "runs/pose-baseline", instantaneous_ratio=1.0),
    # DDPM as PDT trains it: epsilon-prediction, plain noise loss, sampled with DDIM steps
    "ddpm-baseline": _preset(
        3000, "runs/pose-ddpm-baseline", instantaneous_ratio=1.0, formulation_options={"prediction": "epsilon"}
    ),
    "cfm-u": _preset(3000, "runs/pose-u", formulation="u"),
    "biped": _preset(3000, "runs/pose-biped", template="biped"),
    "biped-baseline": _preset(3000, "runs/pose-biped-baseline", template="biped", instantaneous_ratio=1.0),
}


@dataclass
class ExtractionConfig:
    """Joints from generated per-point outputs: RigNet-style mean shift + non-maximum
    suppression, the same settings at every NFE. Unused for fixed topologies."""

    bandwidth: float = 0.04
    """Kernel bandwidth in unit-box shape units (RigNet's learned value: 0.043)."""
    min_count: int = 5
    """Fewest generated points a joint must gather."""

    def __post_init__(self) -> None:
        require_positive({"--extraction.bandwidth": self.bandwidth, "--extraction.min-count": self.min_count})


@dataclass(kw_only=True)
class PoseSampleConfig(SampleOptions):
    """Predict the joints of one shape: writes JSON and NPY joints and a PNG of the input points
    with the skeleton drawn (--out names the JSON; the NPY and PNG share its stem)."""

    input: str
    """A mesh (.obj .ply .off .stl ...) or a point cloud (.ply, .npy (N, 3)); y up."""
    seed: int = 0
    """Seed of the surface sampling and of the noise."""
    out: str = "pose-joints.json"
    """Output JSON (joints in the input's own frame); the .npy and .png beside it."""
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.out.endswith(".json"):
            raise ConfigError(f"--out must name a .json file, got {self.out}")


@dataclass(kw_only=True)
class PoseEvalConfig(EvalOptions):
    """Score a trained model on held-out shapes at several NFE, against a multi-step baseline.

    Held-out shapes: procedural and SMPL bodies drawn with --seed (refused if it is the training
    seed), RigNet characters of --rignet.eval-split. Variable topology: CD-J2J, IoU, precision,
    recall (and the joint count); fixed topology: MPJPE, bone-length error and CD-J2J, all in
    unit-box shape units. Writes metrics.json, predictions.png and quality_vs_nfe.png into --out.
    """

    cfm_steps: tuple[int, ...] = (1, 2, 5, 10)
    """Jump counts for CFM."""
    baseline_steps: tuple[int, ...] = (1, 2, 5, 10, 50, 100)
    """Step counts of the baseline's instantaneous solver."""
    n_shapes: int = 32
    """Held-out shapes."""
    seed: int = 1234
    """Seed of the held-out shapes and the noise; must differ from the training seed."""
    batch_size: int = 64
    """Shapes per sampling batch."""
    data_path: str | None = None
    """The SMPL model or RigNet folder, when it moved since training."""
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    figure_shapes: int = 4
    """Shapes drawn in predictions.png."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(
            {"--n-shapes": self.n_shapes, "--batch-size": self.batch_size, "--figure-shapes": self.figure_shapes}
        )


@dataclass
class ConvertSmplConfig:
    """Convert an SMPL or SMPL-X model .pkl (a chumpy pickle too) or .npz to a clean .pkl or .npz
    that smplx and `cfm pose train --data smpl` load without chumpy."""

    src: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="SRC")]
    """The SMPL or SMPL-X model file to read."""
    dst: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="DST")]
    """The file to write (.pkl or .npz)."""
