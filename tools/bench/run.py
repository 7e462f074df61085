"""Run a benchmark and record it: ``uv run python tools/bench/run.py <name> [--quick] [options]``.

Benchmarks: every module ``tools/bench/bench_<name>.py`` with a ``run(argv) -> Report`` function.
Results go to ``tools/bench/results/<section>.json`` and the ``<section>`` section of
``BENCHMARKS.md``.

``run.py all`` re-records every section of ``BENCHMARKS.md`` (the list ``SECTIONS``), one after
the other, at one commit: it refuses to start with uncommitted changes to tracked files and stops
if the checked-out commit changes during the run. It resumes: a section that ``run.py all``
already recorded at the checked-out commit is skipped, so a run that was stopped continues where
it stopped (at the same commit). ``run.py all --list`` prints the plan.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import RESULTS, Report, git_commit, record, uncommitted_changes  # noqa: E402

#: Every section of BENCHMARKS.md: the benchmark that writes it and the options it runs with.
SECTIONS: dict[str, tuple[str, list[str]]] = {
    "toy": ("toy", []),
    "toy-independent": ("toy", ["--coupling", "independent"]),
    "image": ("image", []),
    "pose": ("pose", []),
    "sdf": ("sdf", []),
    "geometry": ("geometry", []),
    "geometry-18000steps": ("geometry", ["--steps", "18000", "--timing-max-nfe", "31"]),
    "precision": ("precision", []),
    "step-time": ("step_time", []),
    "distill-toy": ("distill", []),
    "distill-digits": ("distill", ["--section", "digits"]),
    "distill-geometry": ("distill", ["--section", "geometry"]),
    "distill-ddpm-pose": ("distill_ddpm", ["--app", "pose"]),
    "distill-ddpm-sdf": ("distill_ddpm", ["--app", "sdf"]),
    # the peer implementation comes from the bench dependency group: uv sync --locked --group bench
    "peer-toy": ("peer", ["--section", "toy"]),
    "peer-digits": ("peer", ["--section", "digits"]),
    "peer-toy-recipes": ("peer", ["--section", "toy-recipes"]),
    "peer-digits-recipes": ("peer", ["--section", "digits-recipes"]),
    "time-features": ("time_features", []),
    "derivative-cost": ("derivative_cost", []),
}

ALL_NOTE = "Recorded by `tools/bench/run.py all`: every section of BENCHMARKS.md at the same commit."


def recorded_by_all(section: str, commit: str) -> bool:
    """Whether ``run.py all`` already recorded ``section`` at ``commit`` (its result file says so)."""
    try:
        result = json.loads((RESULTS / f"{section}.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(result, dict) or not isinstance(result.get("machine"), dict):
        return False
    return result["machine"].get("commit") == commit and ALL_NOTE in result.get("notes", [])


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def _load(bench: str) -> Callable[[list[str]], Report]:
    return importlib.import_module(f"bench_{bench}").run


def run_all(
    sections: dict[str, tuple[str, list[str]]] = SECTIONS,
    load: Callable[[str], Callable[[list[str]], Report]] = _load,
    save: Callable[[Report], Path] = record,
    commit: Callable[[], str] = git_commit,
    changes: Callable[[], list[str]] = uncommitted_changes,
    already: Callable[[str, str], bool] = recorded_by_all,
) -> int:
    """Run every section's benchmark in turn and record it, skipping the sections already recorded
    by ``run.py all`` at this commit; 0 when all are recorded at one commit."""
    dirty = changes()
    if dirty:
        print(f"run.py all: commit or stash these changes first: {', '.join(dirty)}", file=sys.stderr)
        return 2
    start = commit()
    for done, (section, (bench, argv)) in enumerate(sections.items()):
        if already(section, start):
            print(f"== {section}: already recorded by run.py all at commit {start}, skipped", flush=True)
            continue
        print(f"== {section}: run.py {' '.join([bench, *argv])} (commit {start})", flush=True)
        report = load(bench)(argv)
        if report.name != section:
            print(f"run.py all: {bench} {argv} wrote section {report.name!r}, not {section!r}", file=sys.stderr)
            return 1
        now = commit()
        if now != start:
            print(
                f"run.py all: the checked-out commit moved from {start} to {now}; "
                f"recorded {done} of {len(sections)} sections, not {section!r} or later",
                file=sys.stderr,
            )
            return 1
        report.notes.append(ALL_NOTE)
        print(f"recorded {save(report)}", flush=True)
    print(f"recorded all {len(sections)} sections of BENCHMARKS.md at commit {start}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("available:", ", ".join(["all", *names]))
        return 0 if argv else 2
    name = argv[0]
    if name == "all":
        if argv[1:] == ["--list"]:
            for section, (bench, options) in SECTIONS.items():
                print(f"{section}: run.py {' '.join([bench, *options])}")
            return 0
        if argv[1:]:
            print("run.py all takes no options but --list", file=sys.stderr)
            return 2
        return run_all()
    if name not in names:
        print(f"unknown benchmark {name!r}; available: {', '.join(['all', *names])}", file=sys.stderr)
        return 2
    report = _load(name)(argv[1:])
    path = record(report)
    print(f"recorded {path} and the '{report.name}' section of BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
