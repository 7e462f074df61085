"""Run a benchmark and record it: ``uv run python tools/bench/run.py <name> [--quick] [options]``.

Benchmarks: every module ``tools/bench/bench_<name>.py`` with a ``run(argv) -> Report`` function.
Results go to ``tools/bench/results/<name>.json`` and the ``<name>`` section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import record  # noqa: E402


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("available:", ", ".join(names))
        return 0 if argv else 2
    name = argv[0]
    if name not in names:
        print(f"unknown benchmark {name!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench_{name}")
    report = module.run(argv[1:])
    path = record(report)
    print(f"recorded {path} and the '{report.name}' section of BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
