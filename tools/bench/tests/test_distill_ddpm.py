"""The epsilon-DDPM distillation benchmark's tables and notes, from eval rows (no training)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_distill_ddpm  # noqa: E402
import run  # noqa: E402


def _row(label, nfe, cd, sampler="euler"):
    return {"label": label, "sampler": sampler, "nfe": nfe, "cd_j2j": cd, "iou": 0.3, "precision": 0.5,
            "recall": 0.4, "joints": 20.0}  # fmt: skip


ROWS = [
    _row("cfm", 1, 0.06, "cumulative"),
    _row("cfm", 2, 0.05, "cumulative"),
    _row("baseline", 1, None),  # no joints found at one step
    _row("baseline", 64, 0.04),
    _row("baseline", 1000, 0.05),
]


def test_both_apps_are_sections_of_the_benchmark_list():
    assert run.SECTIONS["distill-ddpm-pose"] == ("distill_ddpm", ["--app", "pose"])
    assert run.SECTIONS["distill-ddpm-sdf"] == ("distill_ddpm", ["--app", "sdf"])


def test_the_teacher_rows_come_first_and_a_missing_score_is_a_dash():
    rows = bench_distill_ddpm.quality_rows("pose", ROWS)
    assert [(r[0].split()[0], r[2]) for r in rows] == [
        ("teacher", 1),
        ("teacher", 64),
        ("teacher", 1000),
        ("student", 1),
        ("student", 2),
    ]
    assert rows[0][3] == "-" and rows[1][3] == 0.04
    assert len(rows[0]) == 3 + len(bench_distill_ddpm.METRICS["pose"])


def test_the_notes_compare_the_student_with_the_teacher_at_64_steps_and_at_its_best():
    notes = bench_distill_ddpm.comparisons("pose", ROWS, {"teacher": 10.0, "student": 20.0})
    assert notes[0].startswith(
        "CD-J2J (lower is better): the teacher at 1 DDIM step(s) nothing to score, 64 DDIM step(s) 0.04, "
        "1000 DDIM step(s) 0.05, best 0.04 at 64 step(s); the student at 1 jump(s) 0.06, 2 jump(s) 0.05."
    )
    assert notes[1] == (
        "The student's 1 jump is 1.5x the teacher's CD-J2J at 64 DDIM steps and 1.5x its best (64 steps); "
        "the teacher's 1 step has nothing to score."
    )
    assert notes[2] == "Training: teacher 10 s, student 20 s, total 30 s (1 CPU thread)."


def test_the_best_follows_the_metrics_direction_and_a_scored_step_gives_a_ratio():
    rows = [*ROWS[:2], _row("baseline", 1, 0.3), _row("baseline", 4, 0.03), ROWS[3]]
    notes = bench_distill_ddpm.comparisons("pose", rows, {"teacher": 1.0, "student": 1.0})
    assert "best 0.03 at 4 step(s)" in notes[0]
    assert "2x its best (4 steps); 0.2x its 1 step." in notes[1]
    sdf = [
        {"label": r["label"], "nfe": r["nfe"], "iou": v} for r, v in zip(rows, (0.5, 0.5, 0.1, 0.4, 0.3), strict=True)
    ]
    assert "best 0.4 at 4 step(s)" in bench_distill_ddpm.comparisons("sdf", sdf, {"teacher": 1.0, "student": 1.0})[0]


def test_the_teachers_late_loss_averages_the_second_half_of_its_logged_batches():
    log = [{"step": 25, "loss": 1.0}, {"step": 50, "loss": 0.9}, {"step": 75, "loss": 0.4}]
    log += [{"step": 100, "loss": 0.2}, {"step": 100, "sample/iou": 0.5}]  # a sampling record has no loss
    assert bench_distill_ddpm.late_loss(log) == pytest.approx(0.3)
