"""``cfm toy train --method.teacher RUN``: warm start, records, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from cfm_core.cli import main
from cfm_core.training import load_checkpoint

from .test_toy_app import _train


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A multi-step toy run (the teacher), trained once for this module."""
    return _train(tmp_path_factory.mktemp("teacher"), "teacher", "--method.instantaneous-ratio", "1.0")


def test_distil_a_trained_teacher(tmp_path, capsys, teacher):
    student = _train(tmp_path, "student", "--method.teacher", str(teacher), "--method.objective", "lagrangian")
    meta = json.loads((student / "step-0000006" / "meta.json").read_text())
    source = load_checkpoint(teacher, load_optimizer=False)
    record = meta["extra"]["teacher"]
    assert record["path"] == str(source.path) and len(record["weights_sha256"]) == 64
    assert meta["config"]["train"]["init_from"] == str(source.path)  # warm start from the teacher
    assert "warm start from" in capsys.readouterr().out
    saved = load_checkpoint(student, load_optimizer=False).model
    assert sorted(saved) == sorted(source.model)  # the student's weights only, no teacher inside
    assert any(not torch.equal(saved[k], source.model[k]) for k in saved)


@pytest.mark.parametrize(
    "extra",
    [
        ["--method.student-init", "fresh", "--method.objective", "regression", "--method.teacher-steps", "2"],
        ["--net.hidden", "48"],  # a student of another width starts fresh
    ],
)
def test_a_fresh_student(tmp_path, teacher, extra):
    student = _train(tmp_path, "student", "--method.teacher", str(teacher), *extra)
    assert json.loads((student / "step-0000006" / "meta.json").read_text())["config"]["train"]["init_from"] is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "spirals"], 'trained with data = "two_moons", the student has data = "spirals"'),
        (["--method.formulation", "edm"], "uses formulation"),
        (["--method.objective", "data"], "method.objective 'data' ignores --method.teacher"),
    ],
)
def test_a_teacher_that_does_not_fit_is_refused_before_training(tmp_path, capsys, teacher, extra, message):
    args = ["toy", "train", "--data", "two_moons", "--net.hidden", "32", "--net.depth", "1", "--train.steps", "2"]
    try:
        code = main([*args, "--train.output-dir", str(tmp_path / "s"), "--method.teacher", str(teacher), *extra])
    except SystemExit as exit_:  # refused while parsing the options
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_resume_checks_the_teacher_weights(tmp_path, capsys, teacher):
    student = _train(tmp_path, "student", "--method.teacher", str(teacher))
    resume = ["--method.teacher", str(teacher), "--train.resume", "--train.steps", "8"]
    _train(tmp_path, "student", *resume)
    meta_path = student / "step-0000008" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["extra"]["teacher"]["weights_sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    args = ["toy", "train", "--data", "two_moons", "--net.hidden", "32", "--net.depth", "1"]
    code = main([*args, "--train.output-dir", str(student), *resume[:-1], "10"])
    assert code == 2
    assert "holds other weights" in capsys.readouterr().err
