"""``TrainConfig``: the options every app's ``train`` command shares (tyro shows the docstrings)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from cfm_core.cli import ConfigError

MIXED_PRECISION = ("no", "bf16")
LR_SCHEDULES = ("constant", "cosine")


def _require(ok: object, option: str, message: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{option}: {message}, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class TrainConfig:
    """Training loop options shared by every app.

    init_from takes the network weights of a checkpoint (a run directory means its newest), e.g.
    of a multi-step run trained with instantaneous_ratio=1: the paper's self-distillation mode;
    single-time networks load into two-time ones. The EMA warm-up is k-diffusion's EMAWarmup with
    inv_gamma = 1 (power 2/3 suits long runs, 3/4 short ones).
    """

    steps: int = 2000
    """Number of optimizer steps to train for (the total from step 0, also when resuming)."""
    batch_size: int = 256
    """Global batch size (all processes together); the app's data function produces it."""
    lr: float = 1e-3
    """AdamW learning rate after warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up over this many steps (0: no warm-up), then lr_schedule."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """After the warm-up: keep lr ("constant") or decay it along a half cosine to final_lr_ratio * lr
    at step `steps` ("cosine", as Geometry Distributions trains; it averages out noisy targets).
    Resuming with a different `steps` follows the new cosine from the resumed step on."""
    final_lr_ratio: float = 0.0
    """With lr_schedule "cosine": the learning rate reached at the last step, as a fraction of lr."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""
    ema_decays: tuple[float, ...] = (0.999,)
    """EMA decays kept at once; the first one is used for sampling (empty: no EMA)."""
    ema_warmup_power: float = 0.75
    """EMA warm-up: decay min(decay, 1 - (1 + n)^-power) after n updates (2/3 to 3/4; 0: off, which
    leaves a 0.999 average holding 5% of the initial weights after 3000 steps)."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """Autocast precision of the training forward pass: "no" or "bf16"."""
    tf32: bool = True
    """On a GPU: TF32 tensor cores for float32 matrix products and convolutions (the float32 JVP pass
    included; about 3 significant digits per product). No effect on the CPU."""
    grad_accum: int = 1
    """Split each process's share of the global batch into this many micro-batches, accumulating
    their gradients: the same global batch in less memory. The loss draws its noise and times per
    micro-batch, so N micro-batches on one process reproduce N processes exactly."""
    compile: bool = False
    """torch.compile the loss (network, derivative pass and target); the first steps are slow. The
    compiled derivative pass draws its own dropout masks (eager: those of the gradient pass)."""
    data_workers: int = 0
    """Worker processes building the batches of the next steps ahead of training (torch.utils.data,
    pinned memory on a GPU); 0 builds each batch in the training process. The batches are the same."""
    seed: int = 0
    """Seed of the per-step random streams (data, noise, times); training is reproducible."""
    log_every: int = 50
    """Write metrics to log.jsonl (and TensorBoard when installed) every this many steps."""
    sample_every: int = 0
    """Call the app's sample hook every this many steps (0: only at the end)."""
    checkpoint_every: int = 1000
    """Save a checkpoint every this many steps (0: only at the end)."""
    keep_last: int = 3
    """Keep only the newest this many checkpoints (0 keeps all)."""
    output_dir: str = "runs/default"
    """Run directory: checkpoints step-XXXXXXX/, log.jsonl, tensorboard/, samples."""
    resume: bool = False
    """Continue exactly from the newest checkpoint in output_dir (it must exist)."""
    init_from: str | None = None
    """Warm start (self-distillation) from this run/checkpoint's network; ignored on resume."""
    init_from_ema: bool = True
    """With init_from: take the checkpoint's first EMA average (else its raw weights)."""
    cpu: bool = False
    """Train on the CPU even when a GPU is present."""

    def __post_init__(self) -> None:
        if isinstance(self.output_dir, os.PathLike):
            self.output_dir = os.fspath(self.output_dir)
        if isinstance(self.init_from, os.PathLike):
            self.init_from = os.fspath(self.init_from)
        for option in ("steps", "batch_size", "grad_accum"):
            value = getattr(self, option)
            _require(_is_int(value) and value >= 1, option, "must be a positive integer", value)
        for option in ("warmup_steps", "seed", "sample_every", "checkpoint_every", "keep_last", "data_workers"):
            value = getattr(self, option)
            _require(_is_int(value) and value >= 0, option, "must be a non-negative integer", value)
        _require(
            self.batch_size % self.grad_accum == 0,
            "grad_accum",
            f"must divide batch_size {self.batch_size} (micro-batches of equal size)",
            self.grad_accum,
        )
        _require(
            _is_int(self.log_every) and self.log_every >= 1, "log_every", "must be a positive integer", self.log_every
        )
        _require(_is_number(self.lr) and self.lr > 0, "lr", "must be a positive number", self.lr)
        for option in ("weight_decay", "grad_clip", "ema_warmup_power"):
            value = getattr(self, option)
            _require(_is_number(value) and value >= 0, option, "must be a non-negative number", value)
        _require(
            isinstance(self.ema_decays, (tuple, list)),
            "ema_decays",
            "must be a tuple of floats in [0, 1)",
            self.ema_decays,
        )
        self.ema_decays = tuple(self.ema_decays)
        for decay in self.ema_decays:
            _require(
                _is_number(decay) and 0.0 <= decay < 1.0,
                "ema_decays",
                "every decay must lie in [0, 1)",
                self.ema_decays,
            )
        self.ema_decays = tuple(float(d) for d in self.ema_decays)
        _require(
            len(set(self.ema_decays)) == len(self.ema_decays), "ema_decays", "decays must be distinct", self.ema_decays
        )
        _require(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"must be one of {LR_SCHEDULES}", self.lr_schedule)
        _require(
            _is_number(self.final_lr_ratio) and 0.0 <= self.final_lr_ratio <= 1.0,
            "final_lr_ratio",
            "must be a number in [0, 1]",
            self.final_lr_ratio,
        )
        _require(
            self.mixed_precision in MIXED_PRECISION,
            "mixed_precision",
            f"must be one of {MIXED_PRECISION}",
            self.mixed_precision,
        )
        _require(
            isinstance(self.output_dir, str) and self.output_dir.strip() != "",
            "output_dir",
            "must be a non-empty path",
            self.output_dir,
        )
        init_ok = self.init_from is None or (isinstance(self.init_from, str) and self.init_from)
        _require(init_ok, "init_from", "must be a checkpoint path or None", self.init_from)
        for option in ("resume", "init_from_ema", "cpu", "tf32", "compile"):
            value = getattr(self, option)
            _require(isinstance(value, bool), option, "must be true or false", value)
