"""``run.py all`` covers every benchmark and every BENCHMARKS.md section, and records at one commit."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import run  # noqa: E402
from harness import BENCHMARKS_MD, Report, render  # noqa: E402


def test_every_benchmark_runs_in_all():
    assert {bench for bench, _ in run.SECTIONS.values()} == set(run.available())


def test_all_lists_exactly_the_sections_of_benchmarks_md():
    recorded = re.findall(r"<!-- bench:([\w-]+):start -->", BENCHMARKS_MD.read_text())
    assert sorted(recorded) == sorted(run.SECTIONS)


def test_all_list_prints_the_plan_without_running(capsys, monkeypatch):
    monkeypatch.setattr(run, "_load", lambda bench: (_ for _ in ()).throw(AssertionError(bench)))
    assert run.main(["all", "--list"]) == 0
    out = capsys.readouterr().out
    assert "geometry-18000steps: run.py geometry --steps 18000" in out
    assert len(out.splitlines()) == len(run.SECTIONS)


def _fake_bench(section: str):
    return lambda argv: Report(name=section, title=section, settings={"argv": argv})


SECTIONS = {"a": ("x", []), "b": ("x", ["--b"]), "c": ("y", [])}


def test_all_records_every_section_in_order_with_a_note():
    saved: list[Report] = []
    benches = {("x", ()): "a", ("x", ("--b",)): "b", ("y", ()): "c"}
    code = run.run_all(
        SECTIONS,
        load=lambda bench: lambda argv: _fake_bench(benches[(bench, tuple(argv))])(argv),
        save=lambda report: saved.append(report) or Path(report.name),
        commit=lambda: "abc1234",
        changes=lambda: [],
        already=lambda section, commit: False,
    )
    assert code == 0
    assert [r.name for r in saved] == ["a", "b", "c"]
    assert all(run.ALL_NOTE in r.notes for r in saved)


def test_all_refuses_uncommitted_changes():
    code = run.run_all(
        SECTIONS,
        load=lambda bench: (_ for _ in ()).throw(AssertionError(bench)),
        save=lambda report: Path(report.name),
        commit=lambda: "abc1234",
        changes=lambda: ["packages/cfm-core/src/cfm_core/loss.py"],
    )
    assert code == 2


def test_all_stops_when_the_commit_moves():
    commits = iter(["abc1234", "abc1234", "def5678"])
    saved: list[str] = []
    code = run.run_all(
        SECTIONS,
        load=lambda bench: lambda argv: _fake_bench("a" if not saved else "b")(argv),
        save=lambda report: saved.append(report.name) or Path(report.name),
        commit=lambda: next(commits),
        changes=lambda: [],
        already=lambda section, commit: False,
    )
    assert code == 1
    assert saved == ["a"]


def test_a_section_starts_with_its_anchor():
    text = render(Report(name="toy", title="Toy", settings={}), {"commit": "abc1234"})
    assert text.startswith('<a id="bench-toy"></a>\n\n## Toy\n')


def test_all_resumes_past_the_sections_it_recorded_at_this_commit():
    saved: list[str] = []
    code = run.run_all(
        SECTIONS,
        load=lambda bench: lambda argv: _fake_bench("c")(argv),
        save=lambda report: saved.append(report.name) or Path(report.name),
        commit=lambda: "abc1234",
        changes=lambda: [],
        already=lambda section, commit: commit == "abc1234" and section in ("a", "b"),
    )
    assert code == 0
    assert saved == ["c"]


def _result(tmp_path: Path, section: str, commit: str, notes: list[str]) -> None:
    payload = {"machine": {"commit": commit}, "name": section, "notes": notes}
    (tmp_path / f"{section}.json").write_text(json.dumps(payload))


def test_a_section_counts_as_recorded_by_all_only_at_the_same_commit_with_the_note(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    _result(tmp_path, "a", "abc1234", ["x", run.ALL_NOTE])
    _result(tmp_path, "b", "abc1234", ["x"])  # recorded on its own, not by run.py all
    (tmp_path / "c.json").write_text("not json")
    assert run.recorded_by_all("a", "abc1234")
    assert not run.recorded_by_all("a", "def5678")
    assert not run.recorded_by_all("b", "abc1234")
    assert not run.recorded_by_all("c", "abc1234")
    assert not run.recorded_by_all("missing", "abc1234")
