"""The trainer: exact resume, warm start, the sample hook, bf16, and config errors."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from cfm_core import CFMLoss, FlowMap
from cfm_core.cli import ConfigError, config_from_dict, config_to_dict, parse_config
from cfm_core.training import (
    TrainConfig,
    Trainer,
    build_ema_model,
    latest_checkpoint,
    load_checkpoint,
    lr_factor,
    read_log,
    split_batch,
)
from cfm_core.training.trainer import config_changes

from .test_training_fixtures import gaussian_data, make_loss, train_config


def _strip_timing(records):
    return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in records]


def _state(trainer):
    return {k: v.clone() for k, v in trainer.unwrapped_model.state_dict().items()}


def test_resume_is_exact(tmp_path):
    """20 steps straight == 14 steps, a crash losing the step-14 checkpoint, resume 10 -> 20."""
    options = dict(warmup_steps=5, grad_clip=0.5, ema_warmup_power=0.75, keep_last=0)
    straight = Trainer(
        make_loss(),
        gaussian_data,
        train_config(tmp_path / "a", steps=20, **options),
        run_config={"run": "a"},
        app="test",
    )
    straight.fit()

    first = Trainer(
        make_loss(),
        gaussian_data,
        train_config(tmp_path / "b", steps=14, checkpoint_every=10, **options),
        run_config={"run": "b"},
        app="test",
    )
    first.fit()
    shutil.rmtree(tmp_path / "b" / "step-0000014")  # the log still holds steps 11..14

    seen = []

    def recording_data(step):
        seen.append(step)
        return gaussian_data(step)

    resumed = Trainer(
        make_loss(seed=123),
        recording_data,
        train_config(tmp_path / "b", steps=20, resume=True, **options),
        run_config={"run": "b"},
        app="test",
    )
    assert resumed.step == 10
    resumed.fit()

    assert seen == list(range(10, 20))
    log_a, log_b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["step"] for r in log_b] == list(range(1, 21))
    assert [r["loss"] for r in log_b] == [r["loss"] for r in log_a]  # exact, not approximate
    assert _strip_timing(log_b) == _strip_timing(log_a)
    assert log_a[0]["lr"] == pytest.approx(1e-2 / 5) and log_a[-1]["lr"] == 1e-2
    for key, value in _state(straight).items():
        assert torch.equal(value, _state(resumed)[key]), key
    for decay in (0.9, 0.5):
        for name, value in straight.ema.averages[decay].items():
            assert torch.equal(value, resumed.ema.averages[decay][name]), (decay, name)
    assert straight.ema.updates == resumed.ema.updates == 20
    opt_a, opt_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for index, values in opt_a.items():
        for key, value in values.items():
            assert torch.equal(value, opt_b[index][key]), (index, key)


def test_cosine_schedule_decays_and_resumes_exactly(tmp_path):
    """A cosine run's logged LRs follow lr_factor, and resuming from its step-10 checkpoint after the
    step-20 one is lost retraces steps 11..20 with the same LRs and weights."""
    options = dict(steps=20, warmup_steps=4, lr_schedule="cosine", final_lr_ratio=0.1, keep_last=0)
    straight = Trainer(
        make_loss(), gaussian_data, train_config(tmp_path / "a", **options), run_config={"run": "a"}, app="test"
    )
    straight.fit()
    factor = lr_factor(4, "cosine", 20, 0.1)
    log_a = read_log(tmp_path / "a")
    assert [r["lr"] for r in log_a] == pytest.approx([1e-2 * factor(s) for s in range(20)])
    assert log_a[-1]["lr"] < 0.11e-2

    Trainer(
        make_loss(),
        gaussian_data,
        train_config(tmp_path / "b", checkpoint_every=10, **options),
        run_config={"run": "b"},
        app="test",
    ).fit()
    shutil.rmtree(tmp_path / "b" / "step-0000020")
    resumed = Trainer(
        make_loss(seed=123),
        gaussian_data,
        train_config(tmp_path / "b", resume=True, **options),
        run_config={"run": "b"},
        app="test",
    )
    assert resumed.step == 10
    resumed.fit()
    assert _strip_timing(read_log(tmp_path / "b")) == _strip_timing(log_a)
    for key, value in _state(straight).items():
        assert torch.equal(value, _state(resumed)[key]), key


def test_resume_names_the_options_that_changed(tmp_path, capsys):
    stored = {
        "method": {"target_field": "conditional", "ratio": 0.75},
        "train": {"steps": 4, "lr": 0.01, "ema_decays": [0.9, 0.5]},
    }
    Trainer(make_loss(), gaussian_data, train_config(tmp_path, steps=4), run_config=stored, app="test").fit()
    capsys.readouterr()
    current = {
        "method": {"ratio": 0.75, "time_sampler": "uniform"},
        "train": {"steps": 8, "lr": 0.01, "ema_decays": (0.9, 0.5), "resume": True},
    }
    Trainer(make_loss(), gaussian_data, train_config(tmp_path, steps=8, resume=True), run_config=current, app="test")
    out = capsys.readouterr().out
    # steps and resume may change; the tuple equals the stored list; the rest is named
    assert "changed since the checkpoint" in out and "train.steps" not in out
    assert "ema_decays" not in out and "method.ratio" not in out
    assert "method.target_field: 'conditional' -> (not stored)" in out
    assert "method.time_sampler: (not stored) -> 'uniform'" in out
    assert config_changes(stored, stored) == []


def test_fresh_run_refuses_existing_checkpoints_and_resume_needs_one(tmp_path):
    with pytest.raises(ConfigError, match="resume"):
        Trainer(make_loss(), gaussian_data, train_config(tmp_path, resume=True), run_config={}, app="test")
    Trainer(make_loss(), gaussian_data, train_config(tmp_path, steps=2), run_config={}, app="test").fit()
    with pytest.raises(ConfigError, match="output_dir"):
        Trainer(make_loss(), gaussian_data, train_config(tmp_path), run_config={}, app="test")
    with pytest.raises(ConfigError, match="ema_decays"):
        Trainer(
            make_loss(),
            gaussian_data,
            train_config(tmp_path, resume=True, ema_decays=(0.9,)),
            run_config={},
            app="test",
        )


@pytest.mark.parametrize("two_time_teacher", [False, True])
@pytest.mark.parametrize("use_ema", [True, False])
def test_warm_start_reproduces_the_multi_step_network_at_r_equal_t(tmp_path, two_time_teacher, use_ema):
    teacher_dir = tmp_path / "teacher"
    Trainer(
        make_loss(ratio=1.0, two_time=two_time_teacher),
        gaussian_data,
        train_config(teacher_dir, steps=3),
        run_config={},
        app="test",
    ).fit()
    teacher = build_ema_model(
        teacher_dir, make_loss(seed=7, ratio=1.0, two_time=two_time_teacher).model, use_ema=use_ema
    )

    student = Trainer(
        make_loss(seed=3),
        gaussian_data,
        train_config(tmp_path / "student", init_from=str(teacher_dir), init_from_ema=use_ema),
        run_config={},
        app="test",
    )
    net = student.unwrapped_model.net
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(16, 2, generator=g), torch.rand(16, generator=g)
    with torch.no_grad():
        assert torch.equal(net(x, t, t), teacher.net(x, t, t))
        assert not torch.equal(net(x, t, torch.ones_like(t)), net(x, t, t))
    for name, p in student.unwrapped_model.named_parameters():  # EMA restarts from the warm start
        assert torch.equal(student.ema.averages[0.9][name], p.detach()), name


def test_warm_start_rejects_another_formulation(tmp_path):
    Trainer(make_loss(ratio=1.0), gaussian_data, train_config(tmp_path / "t", steps=1), run_config={}, app="test").fit()
    Trainer(
        make_loss(),
        gaussian_data,
        train_config(tmp_path / "ok", init_from=str(tmp_path / "t")),
        run_config={},
        app="test",
    )
    x1_model = CFMLoss(FlowMap(make_loss().model.net, formulation="x1"))
    with pytest.raises(ConfigError, match="init_from"):
        Trainer(
            x1_model,
            gaussian_data,
            train_config(tmp_path / "bad", init_from=str(tmp_path / "t")),
            run_config={},
            app="test",
        )
    with pytest.raises(ConfigError, match="init_from"):
        Trainer(
            make_loss(),
            gaussian_data,
            train_config(tmp_path / "none", init_from=str(tmp_path / "missing")),
            run_config={},
            app="test",
        )


def test_sample_hook_gets_the_ema_model_and_its_metrics_are_logged(tmp_path):
    calls = []

    def on_sample(model, step, output_dir):
        for name, p in model.named_parameters():
            assert torch.equal(p, trainer.ema.averages[0.9][name])
        assert not model.training and output_dir == tmp_path
        calls.append(step)
        return {"score": float(step), "nfe": torch.tensor(1)}

    trainer = Trainer(
        make_loss(),
        gaussian_data,
        train_config(tmp_path, steps=5, sample_every=2, log_every=2),
        run_config={},
        app="test",
        on_sample=on_sample,
    )
    summary = trainer.fit()
    assert calls == [2, 4, 5]
    assert summary["samples"] == {"score": 5.0, "nfe": torch.tensor(1)}
    assert summary["step"] == 5 and summary["checkpoint"] == str(tmp_path / "step-0000005")
    log = read_log(tmp_path)
    assert [r["step"] for r in log if "loss" in r] == [2, 4, 5]
    sampled = [(r["step"], r["sample/score"], r["sample/nfe"]) for r in log if "sample/nfe" in r]
    assert sampled == [(2, 2.0, 1), (4, 4.0, 1), (5, 5.0, 1)]
    assert {"loss", "loss_instantaneous", "loss_cumulative", "lr", "grad_norm", "steps_per_s"} <= set(log[0])


def test_checkpoints_every_n_steps_keep_last_and_conditional_batches(tmp_path):
    def data(step):
        x = gaussian_data(step)
        return x, torch.full_like(x, 0.1)

    trainer = Trainer(
        make_loss(),
        data,
        train_config(tmp_path, steps=7, checkpoint_every=2, keep_last=2),
        run_config={"k": [1, 2]},
        app="test",
        normalisation={"mean": [1.0, -1.0]},
        extra={"note": "hi"},
    )
    trainer.fit()
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-0000006", "step-0000007"]
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.step == 7 and checkpoint.meta["config"] == {"k": [1, 2]}
    assert checkpoint.meta["normalisation"] == {"mean": [1.0, -1.0]}
    assert checkpoint.meta["extra"] == {"note": "hi"} and checkpoint.meta["app"] == "test"


def test_bf16_mixed_precision_smoke(tmp_path):
    try:
        trainer = Trainer(
            make_loss(),
            gaussian_data,
            train_config(tmp_path, steps=3, mixed_precision="bf16"),
            run_config={},
            app="test",
        )
    except (ValueError, RuntimeError, ImportError) as err:
        pytest.skip(f"accelerate offers no bf16 here: {err}")
    assert trainer.accelerator.mixed_precision == "bf16"
    trainer.fit()
    losses = [r["loss"] for r in read_log(tmp_path)]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert latest_checkpoint(tmp_path).name == "step-0000003"
    # a following full-precision trainer in the same process still works
    Trainer(make_loss(), gaussian_data, train_config(tmp_path / "fp32", steps=1), run_config={}, app="test").fit()


def test_lr_factor_and_batch_splitting():
    factor = lr_factor(4)
    assert [factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_factor(0)(0) == 1.0
    cosine = lr_factor(2, "cosine", steps=6, final_lr_ratio=0.2)
    # warm-up, then 0.2 + 0.8 * (1 + cos(pi * k / 4)) / 2 for k = 0..4, held at the end
    expected = [0.5, 1.0, 1.0, 0.2 + 0.4 * (1 + 0.5**0.5), 0.6, 0.2 + 0.4 * (1 - 0.5**0.5), 0.2, 0.2]
    assert [cosine(s) for s in range(8)] == pytest.approx(expected)
    assert lr_factor(0, "cosine", steps=3)(3) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, "linear")
    x = torch.zeros(3, 2)
    assert split_batch(x, 0)[1] is None and split_batch((x, x), 0)[1] is x
    with pytest.raises(TypeError, match=r"data\(5\)"):
        split_batch({"x": x}, 5)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("steps", 0),
        ("steps", 2.5),
        ("batch_size", -1),
        ("lr", 0.0),
        ("weight_decay", -0.1),
        ("warmup_steps", -1),
        ("grad_clip", -1.0),
        ("ema_decays", (1.0,)),
        ("ema_decays", (0.9, 0.9)),
        ("ema_decays", 0.9),
        ("ema_warmup_power", -1.0),
        ("mixed_precision", "fp8"),
        ("seed", -1),
        ("log_every", 0),
        ("sample_every", -2),
        ("checkpoint_every", -1),
        ("keep_last", -1),
        ("output_dir", ""),
        ("resume", "yes"),
        ("init_from", ""),
        ("cpu", 1),
        ("lr_schedule", "step"),
        ("final_lr_ratio", 1.5),
        ("final_lr_ratio", -0.1),
    ],
)
def test_bad_config_values_name_the_option(option, value):
    with pytest.raises(ConfigError, match=rf"^{option}:"):
        TrainConfig(**{option: value})


def test_config_defaults_coercion_and_command_line(tmp_path):
    config = TrainConfig(ema_decays=[0.99, 0.999], output_dir=tmp_path)
    assert config.ema_decays == (0.99, 0.999) and config.output_dir == str(tmp_path)
    assert TrainConfig().steps == 2000 and TrainConfig().mixed_precision == "no"
    argv = [
        "--steps",
        "10",
        "--ema-decays",
        "0.9",
        "0.99",
        "--resume",
        "--init-from",
        "runs/a",
        "--mixed-precision",
        "bf16",
    ]
    parsed = parse_config(TrainConfig, argv, prog="cfm test train")
    assert parsed == TrainConfig(
        steps=10, ema_decays=(0.9, 0.99), resume=True, init_from="runs/a", mixed_precision="bf16"
    )
    assert config_from_dict(TrainConfig, config_to_dict(parsed)) == parsed


def test_minibatch_ot_with_conditional_batches_fails_before_training(tmp_path):
    model = make_loss(coupling="minibatch_ot")

    def conditional(step):
        return gaussian_data(step), torch.zeros(gaussian_data(step).shape[0], 1)

    with pytest.raises(ConfigError, match="method.coupling: minibatch_ot .* carry a condition"):
        Trainer(model, conditional, train_config(tmp_path / "c"), run_config={}, app="test")
    assert not (tmp_path / "c").exists()
    trainer = Trainer(model, gaussian_data, train_config(tmp_path / "u", steps=2), run_config={}, app="test")
    assert trainer.fit()["step"] == 2
