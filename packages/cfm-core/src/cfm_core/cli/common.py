"""Pieces every app's commands share: loading a trained model and the ``info`` command."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfm_core.cli.app import Command, ConfigError
from cfm_core.cli.config import parse_config

if TYPE_CHECKING:
    from cfm_core.loss import CFMLoss


def require_path(path: str | Path, what: str, option: str) -> Path:
    """``path`` as a Path, or :class:`ConfigError` naming ``option`` when it does not exist."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{option}: {what} not found: {p}")
    return p


def load_trained(
    path: str | Path,
    build: Callable[[dict[str, Any]], CFMLoss],
    app: str,
    decay: float | None = None,
    use_ema: bool = True,
    option: str = "--checkpoint",
):
    """Rebuild the model a checkpoint (or a run directory's newest one) was trained as, with EMA weights.

    ``build(run_config)`` constructs a fresh :class:`~cfm_core.CFMLoss` from the stored app config.
    Returns ``(model, checkpoint)`` with its :class:`~cfm_core.FlowMap` ``model``; errors name the
    option and the file.
    """
    from cfm_core.training import build_ema_model, load_checkpoint

    require_path(path, "checkpoint or run directory", option)
    try:
        checkpoint = load_checkpoint(path, load_optimizer=False)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"{option}: {err}") from None
    if checkpoint.meta.get("app") != app:
        raise ConfigError(f"{option}: {checkpoint.path} was trained by app {checkpoint.meta.get('app')!r}, not {app!r}")
    model = build(checkpoint.meta["config"]).model
    try:
        build_ema_model(checkpoint, model, decay, use_ema=use_ema)
    except (KeyError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{option}: {checkpoint.path} does not fit the model: {err}") from None
    return model, checkpoint


@dataclass
class InfoConfig:
    """Print what a checkpoint holds: app, step, formulation, time convention and the full config."""

    checkpoint: str
    """A checkpoint directory, or a run directory (its newest checkpoint)."""


def info_command(app: str) -> Command:
    """The ``cfm <app> info`` command."""

    def run(argv: Sequence[str]) -> int:
        from cfm_core.training import load_checkpoint

        cfg = parse_config(InfoConfig, argv, prog=f"cfm {app} info")
        require_path(cfg.checkpoint, "checkpoint or run directory", "--checkpoint")
        try:
            ckpt = load_checkpoint(cfg.checkpoint, load_optimizer=False)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"--checkpoint: {err}") from None
        meta = ckpt.meta
        print(f"checkpoint       {ckpt.path}")
        print(f"app              {meta.get('app')}")
        print(f"step             {meta.get('step')}")
        print(f"library version  {meta.get('library_version')}")
        print(f"app version      {meta.get('app_version', '(not stored)')}")
        print(f"formulation      {json.dumps(meta.get('formulation'))}")
        print(f"time convention  {meta.get('time_convention')}")
        print(f"EMA decays       {meta.get('ema_decays')}")
        print(f"normalisation    {json.dumps(meta.get('normalisation'))}")
        print("config:")
        print(json.dumps(meta.get("config"), indent=2))
        return 0

    return Command("info", "print a checkpoint's metadata and config", run)
