"""The distillation benchmark's verdicts: each flow-map student against its targets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_distill  # noqa: E402

# student, training s, total s, 1-step Chamfer, 1-step / peer's, 3-step / teacher@63, 3-step met
ROWS = [
    ["eulerian", 10.0, 30.0, 0.04, 0.8, 1.0, True],
    ["lagrangian", 10.0, 30.0, 0.07, 1.4, 1.32, False],
    ["regression peer", 20.0, 40.0, 0.05, 1.0, "", ""],
]


def test_each_student_gets_one_verdict_and_the_peer_none():
    verdicts = bench_distill._geometry_verdicts(ROWS, best=0.02, best_nfe=63)
    assert [v.split(":")[0] for v in verdicts] == ["eulerian", "lagrangian"]


def test_a_met_target_says_so_and_a_missed_one_says_by_how_much():
    met, missed = bench_distill._geometry_verdicts(ROWS, best=0.02, best_nfe=63)
    assert met.count("(met)") == 2 and "missed" not in met
    assert "(missed by a factor 1.2)" in missed  # 1.32 / 1.1
    assert "(missed: 40% above it)" in missed  # 1.4x the peer's one step


@pytest.mark.parametrize("to_peer", [1.0, 1.01])
def test_equalling_the_peer_does_not_beat_it(to_peer):
    rows = [["eulerian", 1.0, 2.0, 0.05, to_peer, 1.0, True]]
    (verdict,) = bench_distill._geometry_verdicts(rows, best=0.05, best_nfe=63)
    assert "missed" in verdict


def test_digits_target_notes_say_met_or_by_how_much_each_flow_map_student_missed():
    rows = [
        ["eulerian", 1.0, 2.0, 1.2, 1.05],
        ["lagrangian", 1.0, 2.0, 1.3, 0.99],
        ["regression peer", 1.0, 2.0, 1.1, ""],
    ]
    notes = bench_distill._digits_target_notes(rows)
    assert notes == [
        "Student eulerian: 1 jump(s) 1.2x: met; 4 jump(s) 1.05x: missed by 0.05x.",
        "Student lagrangian: 1 jump(s) 1.3x: missed by 0.05x; 4 jump(s) 0.99x: met.",
    ]


def test_toy_verdicts_count_the_seeds_whose_one_jump_meets_the_target():
    # student, training s, total s, 1-step energy, within the floor, floor sd above the teacher
    rows = [
        ["eulerian, seed 0", 1.0, 2.0, 0.002, False, 4.0],
        ["eulerian, seed 1", 1.0, 2.0, 0.0005, True, 1.5],
        ["lagrangian, seed 0", 1.0, 2.0, 0.0004, True, 0.5],
        ["lagrangian, seed 1", 1.0, 2.0, 0.0003, True, 0.1],
        ["regression peer", 1.0, 2.0, 0.0001, True, -0.5],
    ]
    eulerian, lagrangian = bench_distill._toy_verdicts(rows, (0, 1))
    assert eulerian == (
        "eulerian: one jump within the floor with 1 of 2 training seeds "
        "(4, 1.5 floor sd above the teacher at 64 steps): met with some seeds only."
    )
    assert lagrangian.startswith("lagrangian: one jump within the floor with 2 of 2 training seeds")
    assert lagrangian.endswith(": met.")
