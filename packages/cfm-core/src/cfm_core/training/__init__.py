"""The shared trainer: every app trains, saves, resumes and loads through this package.

Usage::

    from cfm_core.training import TrainConfig, Trainer, build_ema_model, seed_initial_weights

    seed_initial_weights(seed)                             # before building: reproducible weights
    model = build_model(...)
    trainer = Trainer(model, data, TrainConfig(steps=2000), run_config=config_to_dict(cfg),
                      app="toy", on_sample=hook)          # data(step) -> x or (x, cond)
    summary = trainer.fit()                                # resume: TrainConfig(resume=True)
    model = build_ema_model("runs/default", fresh_model)   # EMA weights, for sampling

Run directory (``TrainConfig.output_dir``)::

    log.jsonl                 one JSON object per line: {"step", "loss", "loss_*", "lr",
                              "grad_norm", "steps_per_s"} every log_every steps, and
                              {"step", "sample/<name>"} for what the sample hook returns
    tensorboard/              the same scalars, when the tensorboard package is installed
    step-0001000/             one checkpoint per saved step (the newest keep_last are kept)

Checkpoint directory ``step-{step:07d}/`` (written into a hidden temporary directory beside it,
then renamed into place: a crash never leaves a partial checkpoint; no pickles anywhere)::

    meta.json                 {"format": 1, "library_version", "step", "app", "app_version",
                               "formulation": model.formulation.config(), "time_convention",
                               "config": the full resolved app config, "normalisation": dict | null,
                               "extra": dict, "ema_decays": [..], "optimizer": bool}
    model.safetensors         the FlowMap's raw state dict (keys "net.…")
    ema-{decay}.safetensors   per EMA decay (e.g. ema-0.999.safetensors): float32 averages of the
                              parameters; metadata {"decay", "updates"}
    optimizer.safetensors     AdamW state tensors as "{param index}.{name}"
    optimizer.json            the rest of the optimizer state (param groups) and the LR
                              scheduler's state

Exact resume needs no RNG state: every step reseeds from ``(seed, step, stream)`` (see
:mod:`cfm_core.training.seeding`), and the data function is a deterministic function of the step.
"""

from cfm_core.training.checkpoint import (
    Checkpoint,
    build_ema_model,
    check_formulation,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from cfm_core.training.config import TrainConfig
from cfm_core.training.ema import EMA, apply_average
from cfm_core.training.loader import StepBatches, step_loader
from cfm_core.training.metric_log import MetricLog, read_log
from cfm_core.training.seeding import loss_stream, seed_everything, seed_initial_weights, step_seed
from cfm_core.training.trainer import Trainer, lr_factor, make_accelerator, set_tf32, split_batch, takes_rows

__all__ = [
    "EMA",
    "Checkpoint",
    "MetricLog",
    "StepBatches",
    "TrainConfig",
    "Trainer",
    "apply_average",
    "build_ema_model",
    "check_formulation",
    "latest_checkpoint",
    "load_checkpoint",
    "lr_factor",
    "loss_stream",
    "make_accelerator",
    "read_log",
    "save_checkpoint",
    "seed_everything",
    "seed_initial_weights",
    "set_tf32",
    "split_batch",
    "step_loader",
    "step_seed",
    "takes_rows",
]
