"""Metric records of a run: JSON lines in ``log.jsonl``, mirrored to TensorBoard if installed."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

LOG_NAME = "log.jsonl"


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of ``run_dir/log.jsonl`` in order (a missing file is an empty log)."""
    path = Path(run_dir) / LOG_NAME
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err})") from None
    return records


class MetricLog:
    """Appends one JSON object per line to ``run_dir/log.jsonl`` and mirrors numbers to TensorBoard.

    Args:
        run_dir: the run directory.
        resume_step: None starts a new log (an old one is replaced); a step keeps the records up to
            that step and drops later ones (written after the checkpoint a run resumes from).
    """

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None) -> None:
        self.path = Path(run_dir) / LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None:
            kept = [r for r in read_log(run_dir) if r.get("step", 0) <= resume_step]
        tmp = self.path.with_name(f".{LOG_NAME}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)
        self.tensorboard = _tensorboard_writer(Path(run_dir) / "tensorboard", resume_step)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (it must hold an integer ``"step"``)."""
        with self.path.open("a") as file:
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
