"""Checkpoints: one directory per saved step holding safetensors files and JSON, never pickles.

The layout is documented in :mod:`cfm_core.training`. A checkpoint directory is written into a
hidden temporary directory beside it and renamed into place, so a crash never leaves a half-written
``step-XXXXXXX/``; :func:`latest_checkpoint` ignores anything else in the run directory, and
:func:`remove_stale_temporaries` clears what a killed process left. A write that fails with an
``OSError`` (a full disk, a read-only folder) raises :class:`~cfm_core.io.OutputError` naming the
checkpoint and the cause, and leaves the older checkpoints as they were.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from cfm_core.io import OutputError, describe_os_error
from cfm_core.training.ema import EMA

FORMAT = 1
META_KEYS = (
    "format",
    "library_version",
    "step",
    "app",
    "formulation",
    "time_convention",
    "config",
    "normalisation",
    "extra",
    "ema_decays",
    "optimizer",
)
_STEP_DIR = re.compile(r"^step-(\d{7,})$")
_TEMPORARY_DIR = re.compile(r"^\.(tmp|old)-step-\d{7,}-")


def checkpoint_dir_name(step: int) -> str:
    """``step-0001000`` for step 1000."""
    return f"step-{int(step):07d}"


def ema_file_name(decay: float) -> str:
    """``ema-0.999.safetensors`` for decay 0.999 (the decay's shortest exact repr)."""
    return f"ema-{float(decay)!r}.safetensors"


@dataclass
class Checkpoint:
    """A loaded checkpoint: its metadata and plain state dicts (tensors on the CPU).

    Attributes:
        path: the checkpoint directory.
        meta: the contents of ``meta.json``.
        model: the model's raw (non-averaged) state dict.
        ema: ``{"updates": int, "averages": {decay: {parameter name: tensor}}}`` (the form
            :meth:`~cfm_core.training.EMA.load_state_dict` takes), or None without EMA.
        optimizer: the optimizer's ``state_dict()``, or None (not saved or not loaded).
        scheduler: the learning-rate scheduler's ``state_dict()``, or None.
    """

    path: Path
    meta: dict[str, Any]
    model: dict[str, Tensor]
    ema: dict[str, Any] | None
    optimizer: dict[str, Any] | None
    scheduler: dict[str, Any] | None

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def ema_decays(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self.meta["ema_decays"])

    def state_dict(self, decay: float | None = None, *, use_ema: bool = True) -> dict[str, Tensor]:
        """The model state dict to load for inference: with ``use_ema``, the parameters are the
        average for ``decay`` (default: the run's first decay; the raw weights if it kept none)."""
        if not use_ema or (decay is None and not self.ema_decays):
            return dict(self.model)
        decay = self.ema_decays[0] if decay is None else float(decay)
        if decay not in self.ema_decays:
            raise KeyError(f"checkpoint {self.path} has no EMA with decay {decay}; it holds {self.ema_decays}")
        average = self.ema["averages"][decay]
        unknown = sorted(set(average) - set(self.model))
        if unknown:
            raise ValueError(
                f"{self.path / ema_file_name(decay)} holds parameters missing from model.safetensors: {unknown[:8]}"
            )
        return {**self.model, **average}


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest ``step-XXXXXXX`` directory in ``run_dir`` (None if there is none)."""
    steps = _checkpoint_dirs(Path(run_dir))
    return steps[max(steps)] if steps else None


def checkpoints_newest_first(run_dir: str | os.PathLike) -> list[Path]:
    """Every ``step-XXXXXXX`` directory in ``run_dir``, the newest first."""
    steps = _checkpoint_dirs(Path(run_dir))
    return [steps[step] for step in sorted(steps, reverse=True)]


def remove_stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the hidden temporary checkpoint directories a killed or failed save left in
    ``run_dir`` (call it only when no other process is saving there); returns what was removed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    stale = sorted(p for p in run_dir.iterdir() if _TEMPORARY_DIR.match(p.name) and p.is_dir())
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _checkpoint_dirs(run_dir: Path) -> dict[int, Path]:
    if not run_dir.is_dir():
        return {}
    found = {}
    for entry in run_dir.iterdir():
        match = _STEP_DIR.match(entry.name)
        if match and entry.is_dir():
            found[int(match.group(1))] = entry
    return found


# ------------------------------------------------------------------------------- saving --
def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: nn.Module,
    *,
    app: str,
    config: Mapping[str, Any],
    app_version: str | None = None,
    ema: EMA | None = None,
    optimizer: Optimizer | None = None,
    scheduler: LRScheduler | None = None,
    normalisation: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    keep_last: int = 0,
) -> Path:
    """Write ``run_dir/step-{step:07d}/`` atomically; keep the newest ``keep_last`` (0: all).

    Args:
        model: the unwrapped :class:`~cfm_core.FlowMap` (its formulation goes into meta).
        app: the app's name; config: the full resolved app config (JSON-serialisable).
        app_version: the version of the app's distribution, stored beside the core's
            ``library_version`` (checkpoints written before it existed have no ``app_version``
            key and load all the same).
        ema: the run's :class:`~cfm_core.training.EMA` (or None); optimizer, scheduler: their
            state goes into ``optimizer.safetensors`` + ``optimizer.json`` (None: inference only).
        normalisation: how the app normalised its data (JSON), for undoing it after sampling.
        extra: anything else the app wants to keep (JSON).

    Returns the checkpoint directory.
    """
    formulation = getattr(model, "formulation", None)
    if formulation is None:
        raise TypeError(f"save_checkpoint needs the unwrapped FlowMap (with .formulation), got {type(model).__name__}")
    from cfm_core import __version__

    ema_state = ema.state_dict() if ema is not None else {"updates": 0, "averages": {}}
    meta = {
        "format": FORMAT,
        "library_version": __version__,
        "step": int(step),
        "app": app,
        "app_version": app_version,
        "formulation": formulation.config(),
        "time_convention": formulation.time_convention,
        "config": dict(config),
        "normalisation": None if normalisation is None else dict(normalisation),
        "extra": dict(extra or {}),
        "ema_decays": list(ema_state["averages"]),
        "optimizer": optimizer is not None,
    }
    run_dir = Path(run_dir)
    final = run_dir / checkpoint_dir_name(step)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_checkpoint_dir(run_dir, final, model, meta, ema_state, optimizer, scheduler)
    except OSError as err:
        raise OutputError(f"cannot write the checkpoint {final}: {describe_os_error(err)}") from None
    except SafetensorError as err:  # safetensors reports its own I/O errors (a full disk) this way
        raise OutputError(f"cannot write the checkpoint {final}: {err}") from None
    if keep_last > 0:
        dirs = _checkpoint_dirs(run_dir)
        for old in sorted(dirs)[:-keep_last]:
            shutil.rmtree(dirs[old])
    return final


def _write_checkpoint_dir(run_dir, final, model, meta, ema_state, optimizer, scheduler) -> None:
    """Write every file into a hidden temporary directory, then rename it to ``final``."""
    tmp = run_dir / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_json(tmp / "meta.json", meta)
        _write_tensors(tmp / "model.safetensors", model.state_dict())
        for decay, average in ema_state["averages"].items():
            _write_tensors(
                tmp / ema_file_name(decay), average, {"decay": repr(float(decay)), "updates": str(ema_state["updates"])}
            )
        if optimizer is not None:
            tensors, rest = _split_optimizer_state(optimizer.state_dict())
            rest["scheduler"] = scheduler.state_dict() if scheduler is not None else None
            _write_tensors(tmp / "optimizer.safetensors", tensors)
            _write_json(tmp / "optimizer.json", rest)
        mode = (tmp / "meta.json").stat().st_mode  # safetensors writes 0600; use the umask's mode
        for file in tmp.glob("*.safetensors"):
            file.chmod(mode)
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_json(path: Path, data: Any) -> None:
    try:
        text = json.dumps(data, indent=2)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{path.name}: content is not JSON-serialisable ({err})") from None
    path.write_text(text + "\n")


def _write_tensors(path: Path, tensors: Mapping[str, Any], metadata: dict[str, str] | None = None):
    plain = {}
    for name, value in tensors.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{path.name}: entry {name!r} is a {type(value).__name__}, not a tensor")
        # clone: safetensors refuses tensors that share memory
        plain[name] = value.detach().cpu().clone().contiguous()
    save_file(plain, str(path), metadata=metadata)


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, replacing an existing ``dst`` (a re-saved step)."""
    if not dst.exists():
        os.replace(src, dst)
        return
    trash = dst.with_name(f".old-{dst.name}-{uuid.uuid4().hex[:8]}")
    os.replace(dst, trash)
    os.replace(src, dst)
    shutil.rmtree(trash, ignore_errors=True)


def _split_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict]:
    """Tensors as ``"{param index}.{key}"``; everything else (param groups, scalars) for JSON."""
    tensors, other = {}, {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                other.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "state": other}


def _join_optimizer_state(tensors: Mapping[str, Tensor], rest: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, _, key = name.partition(".")
        state.setdefault(int(index), {})[key] = tensor
    for index, values in rest["state"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        for group in rest["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------------------ loading --
def load_checkpoint(path: str | os.PathLike, *, load_optimizer: bool = True) -> Checkpoint:
    """Load a checkpoint directory, or the newest checkpoint of a run directory.

    ``load_optimizer=False`` skips the optimizer files (enough for sampling). Missing files raise
    ``FileNotFoundError`` and unreadable ones ``ValueError``, naming the file.
    """
    directory = _resolve(Path(path))
    meta = _read_meta(directory / "meta.json")
    model, _ = _read_tensors(directory / "model.safetensors")
    ema = None
    if meta["ema_decays"]:
        averages, updates = {}, set()
        for decay in meta["ema_decays"]:
            file = directory / ema_file_name(decay)
            averages[float(decay)], metadata = _read_tensors(file)
            if "updates" not in metadata:
                raise ValueError(f"{file}: no 'updates' entry in the safetensors metadata")
            updates.add(int(metadata["updates"]))
        if len(updates) != 1:
            raise ValueError(f"{directory}: the EMA files disagree on the update count {sorted(updates)}")
        ema = {"updates": updates.pop(), "averages": averages}
    optimizer = scheduler = None
    if load_optimizer and meta["optimizer"]:
        tensors, _ = _read_tensors(directory / "optimizer.safetensors")
        rest = _read_json(directory / "optimizer.json")
        try:
            optimizer = _join_optimizer_state(tensors, rest)
            scheduler = rest.get("scheduler")
        except (KeyError, ValueError, AttributeError, TypeError) as err:
            raise ValueError(f"{directory / 'optimizer.json'}: malformed optimizer state ({err})") from None
    return Checkpoint(directory, meta, model, ema, optimizer, scheduler)


def _resolve(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint or run directory at {path}")
    if (path / "meta.json").is_file() or _STEP_DIR.match(path.name):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"{path} holds no checkpoint: neither a meta.json nor step-XXXXXXX/ directories")
    return latest


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt checkpoint file {path}: {err}") from None


def _read_meta(path: Path) -> dict[str, Any]:
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise ValueError(f"corrupt checkpoint file {path}: expected a JSON object")
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    if meta["format"] != FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta['format']!r}, this library reads {FORMAT}")
    return meta


def _read_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            return {k: file.get_tensor(k) for k in file.keys()}, dict(file.metadata() or {})
    except SafetensorError as err:
        raise ValueError(f"corrupt checkpoint file {path}: {err}") from None


# ---------------------------------------------------------------------------- inference --
def check_formulation(checkpoint: Checkpoint, model: nn.Module) -> None:
    """Raise ``ValueError`` if ``model``'s formulation differs from the checkpoint's (their time
    conventions and fields differ: mixing them gives silent garbage)."""
    own = json.loads(json.dumps(model.formulation.config()))
    if own != checkpoint.meta["formulation"]:
        raise ValueError(
            f"checkpoint {checkpoint.path} was trained with formulation "
            f"{checkpoint.meta['formulation']}, the model uses {own}"
        )


def build_ema_model(
    checkpoint: Checkpoint | str | os.PathLike, model: nn.Module, decay: float | None = None, *, use_ema: bool = True
) -> nn.Module:
    """Load a checkpoint's weights into ``model`` (a FlowMap built like the trained one)
    for sampling: the EMA average for ``decay`` (default: the first decay; raw weights when the run
    kept no EMA or ``use_ema=False``). Returns ``model`` in eval mode."""
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load_checkpoint(checkpoint, load_optimizer=False)
    check_formulation(checkpoint, model)
    model.load_state_dict(checkpoint.state_dict(decay, use_ema=use_ema))
    return model.eval()
