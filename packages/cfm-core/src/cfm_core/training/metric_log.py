"""Metric records of a run: JSON lines in ``log.jsonl``, mirrored to TensorBoard if installed."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from cfm_core.io import reported_as

LOG_NAME = "log.jsonl"


def read_log(run_dir: str | os.PathLike, *, drop_torn_tail: bool = False) -> list[dict[str, Any]]:
    """Every record of ``run_dir/log.jsonl`` in order (a missing file is an empty log).

    A line that is not a JSON object raises ``ValueError`` naming the file and line; with
    ``drop_torn_tail`` a bad *last* line (what a process killed mid-write leaves) is left out
    with a warning instead."""
    path = Path(run_dir) / LOG_NAME
    if not path.is_file():
        return []
    records = []
    lines = [(n, line) for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1) if line.strip()]
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError as err:
            if drop_torn_tail and index == len(lines) - 1:
                print(f"warning: {path}, line {number}: torn last record left out ({err})", file=sys.stderr)
                break
            raise ValueError(f"{path}, line {number}: not a JSON record ({err})") from None
        records.append(record)
    return records


class MetricLog:
    """Appends one JSON object per line to ``run_dir/log.jsonl`` and mirrors numbers to TensorBoard.

    Args:
        run_dir: the run directory.
        resume_step: None starts a new log (an old one is replaced); a step keeps the records up to
            that step and drops later ones (written after the checkpoint a run resumes from), and
            a torn last line (a kill during a write) with a warning.

    A write that fails (a full disk) raises :class:`~cfm_core.io.OutputError` naming the log.
    """

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None) -> None:
        self.path = Path(run_dir) / LOG_NAME
        kept = []
        if resume_step is not None:
            kept = [r for r in read_log(run_dir, drop_torn_tail=True) if r.get("step", 0) <= resume_step]
        with reported_as(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{LOG_NAME}.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            os.replace(tmp, self.path)
        self.tensorboard = _tensorboard_writer(Path(run_dir) / "tensorboard", resume_step)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (it must hold an integer ``"step"``)."""
        with reported_as(self.path), self.path.open("a") as file:
            file.write(json.dumps(record, default=_to_json) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tensorboard.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _to_json(value: Any) -> Any:
    """Numbers held in tensors or numpy scalars become numbers; anything else its ``str``."""
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    return str(value)


def _tensorboard_writer(log_dir: Path, resume_step: int | None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir), purge_step=None if resume_step is None else resume_step + 1)
