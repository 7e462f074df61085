"""The benchmark harness: every app's benchmark returns a :class:`Report`; the runner records it.

A report holds Markdown-ready tables, the settings it ran with and the figures it drew. The runner
adds the machine, library versions, date and git commit, writes ``tools/bench/results/<name>.json``
and replaces the benchmark's section of ``BENCHMARKS.md`` (between ``<!-- bench:<name> -->``
markers, headed by the anchor ``bench-<name>`` that other documents link to), so the file always
holds the latest measured tables and nothing hand-written. ``run.py all`` records every section at
one commit.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tools" / "bench" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


@dataclass
class Table:
    """A table: a caption, column names and rows of cells (numbers are formatted by the runner)."""

    caption: str
    columns: list[str]
    rows: list[list[Any]]

    def markdown(self) -> str:
        def cell(value: Any) -> str:
            if isinstance(value, float):
                return f"{value:.4g}"
            return str(value)

        lines = [
            f"**{self.caption}**",
            "",
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" for _ in self.columns) + "|",
        ]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Report:
    """What one benchmark measured."""

    name: str
    title: str
    settings: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def machine_info() -> dict[str, Any]:
    """Machine, versions, date and commit of this run."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from cfm_core import __version__

    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cfm_core": __version__,
        "commit": git_commit(),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


def git_commit() -> str:
    """The short hash of the checked-out commit (``unknown`` outside a git checkout)."""
    return _git("rev-parse", "--short", "HEAD").strip() or "unknown"


#: What recording writes: changes there do not make the tree differ from its commit.
OUTPUTS = ("BENCHMARKS.md", "tools/bench/results/", ".benchmarks.lock")


def uncommitted_changes() -> list[str]:
    """Tracked files that differ from the checked-out commit, outside the benchmark outputs."""
    paths = [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return [p for p in paths if not p.startswith(OUTPUTS)]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def render(report: Report, machine: dict[str, Any]) -> str:
    """The Markdown section of a report."""
    env = ", ".join(f"{k} {v}" for k, v in machine.items())
    parts = [
        f'<a id="bench-{report.name}"></a>',
        "",
        f"## {report.title}",
        "",
        f"_Measured: {env}._",
        "",
        "Settings: " + ", ".join(f"`{k}={v}`" for k, v in report.settings.items()),
        "",
    ]
    for table in report.tables:
        parts += [table.markdown(), ""]
    for fig in report.figures:
        rel = os.path.relpath(fig, ROOT)
        parts += [f"![{Path(fig).stem}]({rel})", ""]
    parts += [f"- {note}" for note in report.notes]
    return "\n".join(parts).rstrip() + "\n"


def record(report: Report) -> Path:
    """Write the JSON result and update ``BENCHMARKS.md`` (under a file lock, so benchmarks that
    finish together do not overwrite each other's sections); return the JSON path."""
    import fcntl

    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT / ".benchmarks.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _record_locked(report)


def _record_locked(report: Report) -> Path:
    machine = machine_info()
    payload = {"machine": machine, **asdict(report)}
    out = RESULTS / f"{report.name}.json"
    _atomic_write(out, json.dumps(payload, indent=2, default=str) + "\n")
    section = render(report, machine)
    start, end = f"<!-- bench:{report.name}:start -->", f"<!-- bench:{report.name}:end -->"
    text = (
        BENCHMARKS_MD.read_text()
        if BENCHMARKS_MD.exists()
        else (
            "# Benchmarks\n\nEvery table below is written by `tools/bench/run.py` from a measured run; "
            "nothing here is typed by hand. Re-run a benchmark to refresh its section, or "
            "`tools/bench/run.py all` to re-record every section at one commit.\n"
        )
    )
    block = f"{start}\n{section}{end}"
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    _atomic_write(BENCHMARKS_MD, text)
    return out
