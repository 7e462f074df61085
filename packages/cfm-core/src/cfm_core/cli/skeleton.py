"""The skeleton of an app's commands: shared option groups, the device, training and loading runs.

An app keeps only its domain parts (its configs, ``build_model(run_config)``, data, metrics and
pictures); the command glue is here::

    @dataclass(kw_only=True)
    class MySampleConfig(SampleOptions):          # --checkpoint --steps --sampler --seed --ema ...
        out: str = "samples.npy"

    def train(cfg: MyTrainConfig) -> dict:
        return train_run(APP, cfg, build_model, my_batches(cfg), on_sample=my_hook(cfg))

    def sample(cfg: MySampleConfig) -> Path:
        model, checkpoint, run = load_run(cfg.checkpoint, build_model, APP, MyTrainConfig,
                                          ema_decay=cfg.ema_decay, use_ema=cfg.ema)
        ...

    run_sample = from_argv(sample, MySampleConfig, "cfm my sample")   # the Command's body
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from cfm_core.cli.app import ConfigError
from cfm_core.cli.common import load_trained
from cfm_core.cli.config import config_from_dict, config_to_dict, parse_config, require_positive

if TYPE_CHECKING:
    import torch

    from cfm_core.evaluation import SweepEntry
    from cfm_core.flow_map import FlowMap
    from cfm_core.training import Checkpoint, Trainer

C = TypeVar("C")

Sampler = Literal["cumulative", "euler", "heun"]
BaselineMethod = Literal["euler", "heun"]


@dataclass(kw_only=True)
class SampleOptions:
    """The options of every ``cfm <app> sample`` command; an app's sample config extends it
    (and may redeclare a field to change its default)."""

    checkpoint: str
    """A checkpoint directory or a run directory (its newest checkpoint)."""
    steps: int = 1
    """Number of jumps (cumulative) or solver steps (euler/heun)."""
    sampler: Sampler = "cumulative"
    """cumulative = CFM jumps; euler/heun = the instantaneous (r = t) field, multi-step."""
    seed: int = 0
    """Seed of the noise."""
    ema_decay: float | None = None
    """Which EMA average to use (default: the first); --no-ema uses the raw weights."""
    ema: bool = True
    """Sample with an EMA average of the weights (--ema-decay picks which); --no-ema: the raw weights."""

    def __post_init__(self) -> None:
        require_positive({"--steps": self.steps}, integer=True)


@dataclass(kw_only=True)
class EvalOptions:
    """The options of every ``cfm <app> eval`` command (the NFE sweep of a CFM model beside a
    multi-step baseline); an app's eval config extends it (and may redeclare a field)."""

    checkpoint: str
    """The CFM checkpoint (or run directory)."""
    baseline: str | None = None
    """A multi-step baseline checkpoint; default: the CFM model's own r = t field."""
    cfm_steps: tuple[int, ...] = (1, 2, 4)
    """Jump counts for CFM."""
    baseline_steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    """Step counts for the baseline's instantaneous solver."""
    baseline_method: BaselineMethod = "euler"
    """The baseline's solver (euler is deterministic DDIM for ddim)."""
    seed: int = 1234
    """Seed of the noise and of the held-out data (never the training stream)."""
    out: str | None = None
    """Output folder (default: <run dir>/eval)."""

    def __post_init__(self) -> None:
        if not self.cfm_steps:
            raise ConfigError("--cfm-steps needs at least one jump count")
        for name, counts in (("cfm-steps", self.cfm_steps), ("baseline-steps", self.baseline_steps)):
            if counts and min(counts) < 1:
                raise ConfigError(f"--{name} must be positive integers, got {list(counts)}")

    def out_dir(self, checkpoint: Checkpoint) -> Path:
        """``--out``, or the ``eval`` folder beside ``checkpoint``."""
        return Path(self.out) if self.out else checkpoint.path.parent / "eval"

    def sweep(
        self, noise: torch.Tensor, model: FlowMap, baseline: FlowMap | None = None, **options: Any
    ) -> list[SweepEntry]:
        """:func:`~cfm_core.evaluation.nfe_sweep` of ``model`` at ``--cfm-steps`` jumps and of
        ``baseline`` (default: ``model``'s own r = t field) with ``--baseline-method`` at
        ``--baseline-steps``, all from ``noise``; ``options`` (``cond``, ``guidance``,
        ``batch_size``) go to it."""
        from cfm_core.evaluation import nfe_sweep

        baseline = model if baseline is None else baseline
        return nfe_sweep(noise, model, self.cfm_steps, baseline, self.baseline_steps, self.baseline_method, **options)


def default_device() -> torch.device:
    """The device commands sample and evaluate on: the GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_of(model: torch.nn.Module) -> torch.device:
    """The device ``model``'s parameters are on (where its inputs must go)."""
    return next(model.parameters()).device


def make_trainer(
    app: str,
    config: Any,
    build_model: Callable[[dict[str, Any]], Any],
    data: Callable[[int], Any],
    *,
    teacher_must_match: Sequence[str] = (),
    **trainer_options: Any,
) -> Trainer:
    """The :class:`~cfm_core.training.Trainer` of an app's train ``config`` (a dataclass with a
    ``train`` field, a :class:`~cfm_core.training.TrainConfig`): the config is stored as the run
    config, every RNG is seeded with ``config.train.seed`` right before ``build_model`` builds the
    fresh model (reproducible initial weights), and ``data(step)`` feeds it. ``trainer_options``
    go to the Trainer (``normalisation``, ``on_sample``, ``extra``). ``build_model(run_config)``
    returns the :class:`~cfm_core.CFMLoss` to train (its ``.model`` is what checkpoints hold).

    With ``config.method.teacher`` the loss distils that trained run (see
    :func:`cfm_core.cli.teacher.distillation_setup`): the teacher must share the dotted config keys
    ``teacher_must_match`` (data shape, classes...) and is recorded in every checkpoint."""
    from cfm_core.cli.teacher import distillation_setup, teacher_record, with_teacher
    from cfm_core.training import Trainer, seed_initial_weights

    config, teacher = distillation_setup(config, build_model, app, must_match=teacher_must_match)
    run_config = config_to_dict(config)
    seed_initial_weights(config.train.seed)
    model = with_teacher(build_model(run_config), teacher, config.method.objective)
    if teacher is not None:
        trainer_options["extra"] = {**(trainer_options.get("extra") or {}), **teacher_record(teacher)}
    return Trainer(model, data, config.train, run_config=run_config, app=app, **trainer_options)


def demo_run(config: C, out: str | Path, *, steps: int, seed: int, sample_every: int = 0, **method: Any) -> C:
    """One training run of a ``demo`` command: the train ``config`` with its ``method`` options
    replaced by ``method``, ``steps`` steps from ``seed``, one checkpoint at the end, previews
    every ``sample_every`` steps (0: none), written into ``out``."""
    return replace(
        config,
        method=replace(config.method, **method),
        train=replace(
            config.train,
            steps=steps,
            seed=seed,
            output_dir=str(out),
            checkpoint_every=steps,
            sample_every=sample_every,
        ),
    )


def train_run(
    app: str,
    config: Any,
    build_model: Callable[[dict[str, Any]], Any],
    data: Callable[[int], Any],
    **trainer_options: Any,
) -> dict[str, Any]:
    """Train as :func:`make_trainer` sets up and return the trainer's summary."""
    return make_trainer(app, config, build_model, data, **trainer_options).fit()


class TrainedRun(NamedTuple):
    """A trained model loaded for sampling, its checkpoint, and the app config it was trained with."""

    model: FlowMap
    checkpoint: Checkpoint
    config: Any


def load_run(
    path: str | Path,
    build_model: Callable[[dict[str, Any]], Any],
    app: str,
    config_type: type[C],
    *,
    option: str = "--checkpoint",
    ema_decay: float | None = None,
    use_ema: bool = True,
    device: torch.device | str | None = None,
) -> TrainedRun:
    """Load what ``cfm <app> train`` wrote at ``path`` (a checkpoint or a run directory): the
    :class:`~cfm_core.FlowMap` (EMA weights unless ``use_ema`` is false, in eval mode, on ``device``, default
    :func:`default_device`), its checkpoint and its run config as a ``config_type``. Every error
    is a :class:`ConfigError` naming ``option``."""
    model, checkpoint = load_trained(path, build_model, app, ema_decay, use_ema=use_ema, option=option)
    try:
        config = config_from_dict(config_type, checkpoint.meta["config"])
    except (KeyError, ValueError, TypeError) as err:
        raise ConfigError(f"{option}: {checkpoint.path} holds no usable {app} run config: {err}") from None
    return TrainedRun(model.to(device or default_device()), checkpoint, config)


def from_argv(
    command: Callable[[C], Any],
    config_type: type[C],
    prog: str,
    presets: Mapping[str, C] | None = None,
) -> Callable[[Sequence[str]], int]:
    """The body of a :class:`~cfm_core.cli.Command`: parse the arguments into ``config_type``
    (``--preset NAME`` picks one of ``presets``), run ``command`` on the config, exit code 0."""

    def run(argv: Sequence[str]) -> int:
        command(parse_config(config_type, argv, prog=prog, presets=presets))
        return 0

    return run
