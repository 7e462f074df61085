"""Loading a distillation teacher: EMA weights, frozen, and refused with the difference named."""

from __future__ import annotations

import pytest
import torch
from cfm_core import CFMLoss, FlowMap
from cfm_core.cli import ConfigError
from cfm_core.cli.teacher import load_teacher, same_network
from cfm_core.formulations import get_formulation
from cfm_core.training import EMA, save_checkpoint

from .test_training_fixtures import TinyNet

CONFIG = {"data": {"shape": [2], "classes": 0}, "net": {"hidden": 32}, "method": {"formulation": "u"}}


def build(config):
    method = config["method"]
    net = TinyNet(hidden=config["net"]["hidden"])
    return CFMLoss(FlowMap(net, method["formulation"], formulation_options=method.get("formulation_options")))


def _teacher_run(run_dir, config=CONFIG, app="demo"):
    torch.manual_seed(0)
    model = build(config).model
    ema = EMA(model, (0.9,))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # raw weights differ from the EMA average
    save_checkpoint(run_dir, 5, model, app=app, config=config, ema=ema)
    return model, ema


def _load(path, student_config=CONFIG, formulation="u", **kwargs):
    return load_teacher(
        path,
        build,
        "demo",
        student_config=student_config,
        student_formulation=get_formulation(formulation),
        must_match=("data.shape", "data.classes"),
        **kwargs,
    )


def test_teacher_holds_the_ema_weights_frozen_and_records_its_source(tmp_path):
    _, ema = _teacher_run(tmp_path / "teacher")
    teacher, config = _load(tmp_path / "teacher")
    assert config == CONFIG
    average = ema.state_dict()["averages"][0.9]
    for name, value in teacher.model.state_dict().items():
        torch.testing.assert_close(value, average[name])
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())
    record = teacher.record()
    assert record["path"].endswith("step-0000005") and len(record["weights_sha256"]) == 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"shape": [3], "classes": 0}}, r"data.shape = \[2\], the student has data.shape = \[3\]"),
        ({"data": {"shape": [2], "classes": 10}}, "data.classes = 0, the student has data.classes = 10"),
    ],
)
def test_a_teacher_of_another_shape_or_class_count_is_refused(tmp_path, change, message):
    _teacher_run(tmp_path / "teacher")
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path / "teacher", student_config={**CONFIG, **change})


def test_a_teacher_of_another_app_or_formulation_is_refused(tmp_path):
    _teacher_run(tmp_path / "other", app="pose")
    with pytest.raises(ConfigError, match="--method.teacher: .* was trained by app 'pose', not 'demo'"):
        _load(tmp_path / "other")
    _teacher_run(tmp_path / "teacher")
    with pytest.raises(ConfigError, match='formulation \\{"name": "u"\\}, the student \\{"name": "edm"'):
        _load(tmp_path / "teacher", formulation="edm")


EPSILON = {**CONFIG, "method": {"formulation": "ddim", "formulation_options": {"prediction": "epsilon"}}}


def test_an_epsilon_teacher_loads_as_such_for_an_x0_student_of_its_path(tmp_path):
    """The checkpoint's stored prediction rebuilds the teacher as an epsilon model; an x0 student of
    the same path distils it, a student of another path (beta_max) or formulation is refused."""
    _teacher_run(tmp_path / "teacher", config=EPSILON)
    teacher, _ = _load(tmp_path / "teacher", formulation="ddim")
    assert teacher.formulation.prediction == "epsilon"
    with pytest.raises(ConfigError, match='"prediction": "epsilon"\\}, the student \\{"name": "ddim", "beta_min"'):
        _load(tmp_path / "teacher", formulation={"name": "ddim", "beta_max": 10.0})
    with pytest.raises(ConfigError, match='the student \\{"name": "edm"'):
        _load(tmp_path / "teacher", formulation="edm")


def test_missing_teacher_and_teacher_still_training_are_named(tmp_path):
    with pytest.raises(ConfigError, match="--method.teacher: teacher run directory or checkpoint not found"):
        _load(tmp_path / "nowhere")
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "log.jsonl").write_text("")
    with pytest.raises(ConfigError, match="holds no checkpoint yet"):
        _load(tmp_path / "training")


def test_a_student_of_another_width_starts_fresh():
    smaller = {**CONFIG, "net": {"hidden": 16}}
    assert same_network(CONFIG, dict(CONFIG))
    assert not same_network(CONFIG, smaller)
