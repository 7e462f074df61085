"""``Trainer``: the training loop every app shares (CPU, a GPU, or ``accelerate launch`` DDP).

Data and processes
------------------
The app gives a function ``data(step) -> x | (x, cond)`` returning the *global* batch of global step
``step`` (0-based) deterministically; before calling it the trainer seeds every RNG with stream 0
of the step (:mod:`cfm_core.training.seeding`), so a data function that draws random numbers is
deterministic too, and identical on every process. Process ``rank`` of ``world`` keeps the rows
``rank::world`` (the global batch must divide evenly). A data function with a ``rows`` parameter,
``data(step, rows)``, is given that ``slice`` and builds only those rows of the global batch, so
that no process loads what it drops.

With ``grad_accum = N`` each process splits its rows into ``N`` micro-batches (``micro::N`` of
them) and accumulates their gradients. Micro-batch ``m`` of process ``rank`` is chunk
``k = m * world + rank`` of the global batch (its rows are ``k::world * N``); the trainer reseeds
with the chunk's own stream before its loss draws noise and times. Chunks are thus defined by
``world * N`` alone: one process with ``N = 2`` trains exactly as two processes with ``N = 1``. A
run reproduces exactly and resumes exactly from a checkpoint.

The prepared module is the :class:`~cfm_core.CFMLoss`: its ``forward`` is the loss, so the DDP
wrapper sees the gradient pass and synchronises gradients (the JVP runs under ``no_grad`` inside
it). Checkpoints and the EMA hold its ``.model``, the :class:`~cfm_core.FlowMap` (keys ``net.*``).

Host synchronisation
--------------------
A step reads nothing back from the device but on logging and checkpoint steps: there the loss
checks its data and its value for NaN and inf (:attr:`~cfm_core.CFMLoss.check_finite`) and the
trainer reads the gradient norm; a non-finite gradient norm seen since the previous read stops the
run before anything is saved.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import send_to_device
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from cfm_core.cli import ConfigError, app_version
from cfm_core.conditions import Condition, select_condition
from cfm_core.flow_map import FlowMap
from cfm_core.io import check_output_dir
from cfm_core.loss import CFMLoss
from cfm_core.model import CumulativeFlowMap
from cfm_core.nn import load_single_time_state_dict
from cfm_core.training.checkpoint import (
    Checkpoint,
    check_formulation,
    checkpoints_newest_first,
    latest_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from cfm_core.training.config import LR_SCHEDULES, TrainConfig
from cfm_core.training.ema import EMA
from cfm_core.training.loader import step_loader
from cfm_core.training.metric_log import MetricLog
from cfm_core.training.seeding import DATA_STREAM, loss_stream, seed_everything, step_seed

Batch = Tensor | tuple[Tensor, Condition]
DataFn = Callable[[int], Batch]
SampleHook = Callable[[FlowMap, int, Path], dict[str, Any] | None]


def make_accelerator(config: TrainConfig) -> Accelerator:
    """An ``Accelerator`` for ``config.cpu`` and ``config.mixed_precision``.

    A machine without an accelerator (GPU) trains on the CPU as if ``config.cpu`` were set, so that
    processes started by ``accelerate launch --multi_gpu --num_processes N`` (or ``torchrun``) on a
    CPU-only machine form one gloo process group.

    accelerate keeps one global state per process and refuses a second ``Accelerator`` with
    another precision or device; in a single (non-distributed) process, e.g. a notebook or a test
    session running several trainers, that state is reset instead.
    """
    cpu = config.cpu or not torch.accelerator.is_available()
    kwargs = {"cpu": cpu, "mixed_precision": config.mixed_precision}
    try:
        return Accelerator(**kwargs)
    except ValueError as err:
        if "already been initialized" not in str(err) or PartialState().use_distributed:
            raise
    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(**kwargs)


def set_tf32(device: torch.device, enabled: bool) -> None:
    """Allow (``enabled``) or forbid TF32 tensor cores for float32 matrix products and cuDNN
    convolutions when ``device`` is a GPU; nothing otherwise. The setting is process-wide."""
    if device.type != "cuda":
        return
    precision = "tf32" if enabled else "ieee"
    torch.backends.cuda.matmul.fp32_precision = precision
    torch.backends.cudnn.conv.fp32_precision = precision


def takes_rows(data: Callable[..., Batch]) -> bool:
    """Whether ``data`` builds a part of the global batch when called as ``data(step, rows=...)``."""
    try:
        return "rows" in inspect.signature(data).parameters
    except (TypeError, ValueError):  # a builtin or extension callable without a signature
        return False


def lr_factor(
    warmup_steps: int, schedule: str = "constant", steps: int = 0, final_lr_ratio: float = 0.0
) -> Callable[[int], float]:
    """The LR multiplier of 0-based step ``s``: a linear warm-up ``(s + 1) / warmup_steps`` over the
    first ``warmup_steps`` steps, then 1 (``"constant"``) or a half cosine from 1 at the end of the
    warm-up down to ``final_lr_ratio`` at step ``steps`` (``"cosine"``)."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    decay_steps = max(1, steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        return final_lr_ratio + (1.0 - final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


#: Options that may differ on resume without changing what is trained.
RESUME_OPTIONS = (
    "train.resume",
    "train.steps",
    "train.output_dir",
    "train.log_every",
    "train.sample_every",
    "train.checkpoint_every",
    "train.keep_last",
    "train.tf32",
    "train.compile",
    "train.data_workers",
    "method.forward_rules",
)


def config_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for every dotted option whose value differs between a checkpoint's
    stored run config and the config a resumed run was given (an option the checkpoint does not
    store shows as ``(not stored)``: the run was trained with that option's default of its time),
    leaving out :data:`RESUME_OPTIONS`."""

    def flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        items = {}
        for key, value in config.items():
            if isinstance(value, dict) and value:
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items

    def shown(config: dict[str, Any], key: str) -> str:
        return repr(config[key]) if key in config else "(not stored)"

    old, new = flat(stored), flat(json.loads(json.dumps(current)))  # tuples compare as stored lists
    return [
        f"{key}: {shown(old, key)} -> {shown(new, key)}"
        for key in sorted(old.keys() | new.keys())
        if key not in RESUME_OPTIONS and shown(old, key) != shown(new, key)
    ]


def split_batch(batch: Any, step: int) -> tuple[Tensor, Condition]:
    """``(x, cond)`` from what ``data(step)`` returned: a tensor ``x`` or a pair ``(x, cond)``."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], Tensor):
        return batch[0], batch[1]
    raise TypeError(f"data({step}) must return a tensor x or a pair (x, cond), got {type(batch).__name__}")


class Trainer:
    """Trains a :class:`~cfm_core.CFMLoss`'s model with AdamW, EMA, checkpoints and logs.

    Args:
        loss: the loss to minimise; its ``.model`` is trained (its weights are the initialisation
            unless resuming or ``config.init_from`` is set). A deprecated ``CumulativeFlowMap``
            is accepted too.
        data: ``data(step)`` returns the global batch of 0-based step ``step``: a tensor ``x`` or a
            pair ``(x, cond)``; it must be a deterministic function of ``step`` (random draws are
            fine: the trainer seeds them). Under DDP each process keeps rows ``rank::world``; a
            ``data(step, rows)`` returns only the rows ``rows`` (a ``slice``) of that batch.
        config: the shared training options.
        run_config: the full resolved app config (JSON), stored in every checkpoint.
        app: the app's name, stored in every checkpoint with the version of the distribution
            that registers it (:func:`cfm_core.cli.app_version`).
        normalisation: how the app normalised the data (JSON), stored in every checkpoint.
        on_sample: ``on_sample(ema_model, step, output_dir) -> metrics | None``, called on the main
            process every ``config.sample_every`` steps and at the end with a copy of the model
            holding the first EMA average; the metrics it returns are logged as ``sample/<name>``.
        extra: anything else to store in every checkpoint's ``meta.json`` (JSON).

    Before anything else the output folder is checked (:func:`~cfm_core.io.check_output_dir`) and
    the temporary checkpoint folders a killed run left in it are removed. With ``config.resume``
    the run continues from the newest checkpoint that loads (a newer unreadable one is named in a
    warning), and a torn last line of ``log.jsonl`` is dropped with a warning.
    """

    def __init__(
        self,
        loss: CFMLoss | CumulativeFlowMap,
        data: DataFn,
        config: TrainConfig,
        *,
        run_config: dict[str, Any],
        app: str,
        normalisation: dict[str, Any] | None = None,
        on_sample: SampleHook | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(loss, CumulativeFlowMap):
            loss = loss.cfm_loss
        if not isinstance(loss, CFMLoss):
            raise TypeError(f"loss must be a CFMLoss, got {type(loss).__name__}")
        if not callable(data):
            raise TypeError("data must be callable as data(step)")
        for name, value in (("run_config", run_config), ("normalisation", normalisation), ("extra", extra)):
            try:
                json.dumps(value)
            except (TypeError, ValueError) as err:
                raise TypeError(f"{name} must be JSON-serialisable: {err}") from None
        if loss.recipe.coupling == "minibatch_ot":
            first = data(0, rows=slice(0, None)) if takes_rows(data) else data(0)
            if split_batch(first, 0)[1] is not None:
                raise ConfigError(
                    "method.coupling: minibatch_ot pairs noise across the batch, and this "
                    "app's batches carry a condition (a condition's noise would stop being "
                    "standard normal); use independent"
                )
        self.data, self.config, self.app = data, config, app
        self.run_config, self.normalisation, self.extra = run_config, normalisation, extra or {}
        self.on_sample = on_sample
        self.output_dir = check_output_dir(config.output_dir, "--train.output-dir")
        self.accelerator = make_accelerator(config)
        if self.is_main:
            for stale in remove_stale_temporaries(self.output_dir):
                self.accelerator.print(f"removed {stale}, a checkpoint left half-written by an interrupted run")
        self.data_takes_rows = takes_rows(data)
        chunks = self.accelerator.num_processes * config.grad_accum
        if config.batch_size % chunks:
            raise ConfigError(
                f"batch_size: {config.batch_size} does not split evenly into {self.accelerator.num_processes} "
                f"processes x {config.grad_accum} micro-batches"
            )
        set_tf32(self.accelerator.device, config.tf32)

        model = loss.model
        resume_from = self._checkpoint_to_resume(model)
        if resume_from is not None:
            model.load_state_dict(resume_from.model)
        elif config.init_from is not None:
            self._warm_start(model)
        optimizer = torch.optim.AdamW(loss.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = LambdaLR(
            optimizer, lr_factor(config.warmup_steps, config.lr_schedule, config.steps, config.final_lr_ratio)
        )
        self.loss, self.optimizer = self.accelerator.prepare(loss, optimizer)
        self.loss_fn = torch.compile(self.loss) if config.compile else self.loss
        self.grads_finite: Tensor | None = None  # every gradient norm since the last read was finite
        self.unchecked_from = 0  # the first step whose gradient norm has not been read
        self.ema = EMA(self.unwrapped_model, config.ema_decays, config.ema_warmup_power)
        self.step = 0
        if resume_from is not None:
            self.optimizer.load_state_dict(resume_from.optimizer)
            self.scheduler.load_state_dict(resume_from.scheduler)
            if resume_from.ema is not None:
                self.ema.load_state_dict(resume_from.ema)
            self.step = resume_from.step
            self.accelerator.print(f"resuming from {resume_from.path} at step {self.step}")
            for change in config_changes(resume_from.meta.get("config", {}), run_config):
                self.accelerator.print(f"  changed since the checkpoint: {change}")
        self.log = None
        if self.is_main:
            try:
                self.log = MetricLog(self.output_dir, None if resume_from is None else self.step)
            except ValueError as err:
                raise ConfigError(f"resume: {err}") from None

    # ------------------------------------------------------------------ setup --
    @property
    def unwrapped_loss(self) -> CFMLoss:
        """The loss without its DDP / mixed-precision wrapper (shares the weights)."""
        return self.accelerator.unwrap_model(self.loss)

    @property
    def unwrapped_model(self) -> FlowMap:
        """The model being trained (the unwrapped loss's ``.model``)."""
        return self.unwrapped_loss.model

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _checkpoint_to_resume(self, model: FlowMap) -> Checkpoint | None:
        latest = latest_checkpoint(self.output_dir)
        if not self.config.resume:
            if latest is not None:
                raise ConfigError(
                    f"output_dir: {self.output_dir} already holds checkpoints "
                    f"(newest {latest.name}); pass resume=True to continue that "
                    "run, or choose another output_dir"
                )
            return None
        if latest is None:
            raise ConfigError(f"resume: no checkpoint in {self.output_dir} to resume from")
        checkpoint = self._newest_readable_checkpoint()
        latest = checkpoint.path
        try:
            check_formulation(checkpoint, model)
        except ValueError as err:
            raise ConfigError(f"resume: {err}") from None
        if checkpoint.optimizer is None or checkpoint.scheduler is None:
            raise ConfigError(f"resume: {latest} holds no optimizer state (inference only)")
        if checkpoint.ema_decays != self.config.ema_decays:
            raise ConfigError(
                f"ema_decays: the run being resumed keeps {checkpoint.ema_decays}, "
                f"the config asks for {self.config.ema_decays}"
            )
        return checkpoint

    def _newest_readable_checkpoint(self) -> Checkpoint:
        """The newest checkpoint that loads; an unreadable newer one (a disk that lost part of a
        file) is passed over with a warning naming both."""
        unreadable = []
        for path in checkpoints_newest_first(self.output_dir):
            try:
                checkpoint = load_checkpoint(path)
            except (FileNotFoundError, ValueError) as err:
                unreadable.append(f"{path.name} ({err})")
                continue
            for skipped in unreadable:
                self.accelerator.print(f"warning: cannot read the checkpoint {skipped}; resuming from {path} instead")
            return checkpoint
        raise ConfigError(f"resume: no readable checkpoint in {self.output_dir}: {'; '.join(unreadable)}")

    def _warm_start(self, model: FlowMap) -> None:
        """Load ``config.init_from``'s network weights (single-time checkpoints too)."""
        try:
            source = load_checkpoint(self.config.init_from, load_optimizer=False)
            check_formulation(source, model)
            state = source.state_dict(use_ema=self.config.init_from_ema)
            net_state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
            load_single_time_state_dict(model.net, net_state)
        except (FileNotFoundError, ValueError, KeyError) as err:
            raise ConfigError(f"init_from: {err}") from None
        self.accelerator.print(f"warm start from {source.path} (step {source.step})")

    # --------------------------------------------------------------- one step --
    def local_batch(self, step: int) -> tuple[Tensor, Condition]:
        """This process's rows ``rank::world`` of the global batch of ``step``, on the training device."""
        seed_everything(step_seed(self.config.seed, step, DATA_STREAM))
        return send_to_device(self.local_rows(step), self.accelerator.device, non_blocking=True)

    def local_rows(self, step: int) -> tuple[Tensor, Condition]:
        """This process's rows of the global batch of ``step`` as ``data`` builds them (the caller
        seeds the RNGs; the loader's workers call it too)."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        rows = slice(rank, None, world)
        if self.data_takes_rows:
            x, cond = split_batch(self.data(step, rows=rows), step)
        else:
            x, cond = split_batch(self.data(step), step)
            if x.shape[0] % world:
                raise ValueError(
                    f"the global batch of data({step}) has {x.shape[0]} rows, which "
                    f"do not split evenly over {world} processes"
                )
            if world > 1:
                x, cond = x[rows], select_condition(cond, rows)
        return x, cond

    def batches(self) -> Any:
        """This process's batches of the steps from the current one on, in order: built here, or
        with ``config.data_workers`` by a :func:`~cfm_core.training.loader.step_loader`."""
        if self.config.data_workers == 0:
            return ((step, self.local_batch(step)) for step in range(self.step, self.config.steps))
        loader = step_loader(
            self.local_rows,
            self.step,
            self.config.steps,
            self.config.seed,
            workers=self.config.data_workers,
            pin_memory=self.accelerator.device.type == "cuda",
        )
        return ((step, send_to_device(batch, self.accelerator.device, non_blocking=True)) for step, batch in loader)

    def backward(
        self, step: int, *, check_finite: bool = True, batch: tuple[Tensor, Condition] | None = None
    ) -> dict[str, Tensor]:
        """Forward and backward passes of global step ``step`` on this process's rows (``batch``, or
        :meth:`local_batch`), one per micro-batch (``config.grad_accum``); ``check_finite`` lets the
        loss check its data and value for NaN and inf (a read from the device).

        Leaves the gradients of the mean loss (averaged over processes under DDP) in the parameters
        and returns the loss terms averaged over the micro-batches (tensors on the device).
        :meth:`fit` calls it once per step before the optimizer step.
        """
        x, cond = self.local_batch(step) if batch is None else batch
        world, rank, accum = self.accelerator.num_processes, self.accelerator.process_index, self.config.grad_accum
        if x.shape[0] % accum:
            raise ValueError(
                f"{x.shape[0]} rows of data({step}) on this process do not split into {accum} micro-batches"
            )
        self.loss.train()
        self.unwrapped_loss.check_finite = check_finite
        sums: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        for micro in range(accum):
            rows = slice(micro, None, accum)
            seed_everything(step_seed(self.config.seed, step, loss_stream(micro * world + rank)))
            last = micro == accum - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(self.loss):
                loss, terms = self.loss_fn(x[rows], select_condition(cond, rows), return_terms=True)
                self.accelerator.backward(loss / accum if accum > 1 else loss)
            for name, value in terms.items():
                sums[name] = sums[name] + value if name in sums else value
                counts[name] = counts.get(name, 0) + 1
        return {name: total / counts[name] if counts[name] > 1 else total for name, total in sums.items()}

    def _optimizer_step(self) -> tuple[Tensor, float]:
        """Clip, step the optimizer, the LR schedule and the EMA; returns (the gradient norm as a
        device tensor, the LR used). Reads nothing back from the device."""
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = self.accelerator.clip_grad_norm_(self.loss.parameters(), max_norm)
        finite = torch.isfinite(grad_norm)
        self.grads_finite = finite if self.grads_finite is None else self.grads_finite & finite
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update()
        return grad_norm, lr

    def check_gradients(self) -> None:
        """Raise ``FloatingPointError`` if a gradient norm since the last check was not finite (a
        read from the device: :meth:`fit` checks on logging and checkpoint steps)."""
        finite, self.grads_finite = self.grads_finite, None
        first, self.unchecked_from = self.unchecked_from, self.step
        if finite is not None and not bool(finite):
            raise FloatingPointError(
                f"non-finite gradient norm in steps {first} to {self.step - 1}: lower the "
                "learning rate or check the data and the network"
            )

    # ------------------------------------------------------------------- loop --
    def fit(self) -> dict[str, Any]:
        """Train from the current step to ``config.steps``; returns a summary of the run."""
        cfg = self.config
        first_step, started = self.step, time.perf_counter()
        self.grads_finite, self.unchecked_from = None, self.step
        record: dict[str, Any] = {}
        checkpoint, samples = None, None
        window_steps, window_seconds = 0, 0.0
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"cfm {self.app} train",
            unit="step",
            disable=not self.is_main,
            dynamic_ncols=True,
        )
        batches = iter(self.batches())
        try:
            while self.step < cfg.steps:
                tic = time.perf_counter()
                step, batch = next(batches)
                if step != self.step:
                    raise RuntimeError(f"the batches are out of order: step {step} came at step {self.step}")
                final = self.step + 1 == cfg.steps
                logging = (self.step + 1) % cfg.log_every == 0 or final
                saving = final or (cfg.checkpoint_every and (self.step + 1) % cfg.checkpoint_every == 0)
                terms = self.backward(self.step, check_finite=logging or saving, batch=batch)
                grad_norm, lr = self._optimizer_step()
                self.step += 1
                if logging or saving:
                    self.check_gradients()
                window_seconds += time.perf_counter() - tic
                window_steps += 1
                bar.update(1)
                if logging:
                    record = self._log_training(terms, float(grad_norm), lr, window_steps / window_seconds)
                    bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{lr:.3g}")
                    window_steps, window_seconds = 0, 0.0
                if saving:
                    checkpoint = self.save()
                if final or (cfg.sample_every and self.step % cfg.sample_every == 0):
                    samples = self.sample()
        finally:
            bar.close()
            del batches  # stops the loader's workers
        if self.log is not None:
            self.log.close()
        return {
            "app": self.app,
            "output_dir": str(self.output_dir),
            "step": self.step,
            "trained_steps": self.step - first_step,
            "loss": record.get("loss"),
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "samples": samples,
            "seconds": time.perf_counter() - started,
        }

    def _log_training(
        self, terms: dict[str, Tensor], grad_norm: float, lr: float, steps_per_s: float
    ) -> dict[str, Any]:
        names = sorted(terms)
        values = torch.stack([terms[k].detach().float() for k in names])
        values = self.accelerator.reduce(values, reduction="mean").tolist()
        record = {
            "step": self.step,
            **dict(zip(names, values, strict=True)),
            "lr": lr,
            "grad_norm": grad_norm,
            "steps_per_s": steps_per_s,
        }
        if self.log is not None:
            self.log.write(record)
        return record

    def sampling_model(self) -> FlowMap:
        """A copy of the model holding the first EMA average (the raw weights without EMA), in
        eval mode without gradients."""
        if self.ema.decays:
            return self.ema.copy()
        return copy.deepcopy(self.unwrapped_model).eval().requires_grad_(False)

    def sample(self) -> dict[str, Any] | None:
        """Run the ``on_sample`` hook on the main process and log what it returns."""
        result = None
        if self.on_sample is not None and self.is_main:
            result = self.on_sample(self.sampling_model(), self.step, self.output_dir)
            if result:
                self.log.write({"step": self.step, **{f"sample/{k}": v for k, v in result.items()}})
        self.accelerator.wait_for_everyone()
        return result

    def save(self) -> Path | None:
        """Checkpoint the current step (main process; the others wait). Returns its directory."""
        path = None
        if self.is_main:
            path = save_checkpoint(
                self.output_dir,
                self.step,
                self.unwrapped_model,
                app=self.app,
                app_version=app_version(self.app),
                config=self.run_config,
                ema=self.ema,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                normalisation=self.normalisation,
                extra=self.extra,
                keep_last=self.config.keep_last,
            )
        self.accelerator.wait_for_everyone()
        return path
