"""Checkpoints: round trip, atomic writes, keep-last-N, and errors naming the broken file."""

from __future__ import annotations

import errno
import json

import cfm_core
import pytest
import torch
from cfm_core.io import OutputError
from cfm_core.training import (
    EMA,
    build_ema_model,
    latest_checkpoint,
    load_checkpoint,
    lr_factor,
    save_checkpoint,
)
from cfm_core.training import checkpoint as checkpoint_module
from torch.optim.lr_scheduler import LambdaLR

from .test_training_fixtures import gaussian_data, make_loss


def _trained_state(steps: int = 3):
    """A model, EMA, optimizer and scheduler after a few real steps (non-trivial state)."""
    loss = make_loss()
    model = loss.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = LambdaLR(optimizer, lr_factor(2))
    ema = EMA(model, (0.9, 0.99))
    for step in range(steps):
        torch.manual_seed(step)
        loss(gaussian_data(step)).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        ema.update()
    return model, ema, optimizer, scheduler


def _save(run_dir, step, parts, **kwargs):
    model, ema, optimizer, scheduler = parts
    return save_checkpoint(
        run_dir,
        step,
        model,
        app="toy",
        config={"lr": 0.01, "dims": [2]},
        ema=ema,
        optimizer=optimizer,
        scheduler=scheduler,
        **kwargs,
    )


def test_round_trip_restores_every_state_exactly(tmp_path):
    parts = _trained_state()
    model, ema, optimizer, scheduler = parts
    path = _save(tmp_path, 3, parts, normalisation={"scale": 2.0}, extra={"classes": 10}, app_version="1.2.3")
    assert path == tmp_path / "step-0000003"
    assert sorted(p.name for p in path.iterdir()) == [
        "ema-0.9.safetensors",
        "ema-0.99.safetensors",
        "meta.json",
        "model.safetensors",
        "optimizer.json",
        "optimizer.safetensors",
    ]

    checkpoint = load_checkpoint(path)
    assert checkpoint.meta == {
        "format": 1,
        "library_version": cfm_core.__version__,
        "step": 3,
        "app": "toy",
        "app_version": "1.2.3",
        "formulation": {"name": "u"},
        "time_convention": model.formulation.time_convention,
        "config": {"lr": 0.01, "dims": [2]},
        "normalisation": {"scale": 2.0},
        "extra": {"classes": 10},
        "ema_decays": [0.9, 0.99],
        "optimizer": True,
    }
    for key, value in model.state_dict().items():
        assert torch.equal(checkpoint.model[key], value), key

    restored = make_loss(seed=1).model
    restored.load_state_dict(checkpoint.model)
    restored_ema = EMA(restored, (0.9, 0.99))
    restored_ema.load_state_dict(checkpoint.ema)
    assert restored_ema.updates == 3
    for decay in (0.9, 0.99):
        for name, value in ema.averages[decay].items():
            assert torch.equal(restored_ema.averages[decay][name], value)

    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1e-2)
    restored_scheduler = LambdaLR(restored_optimizer, lr_factor(2))
    restored_optimizer.load_state_dict(checkpoint.optimizer)
    restored_scheduler.load_state_dict(checkpoint.scheduler)
    saved, loaded = optimizer.state_dict(), restored_optimizer.state_dict()
    assert loaded["param_groups"] == saved["param_groups"]
    for index, values in saved["state"].items():
        for key, value in values.items():
            assert torch.equal(loaded["state"][index][key], value), (index, key)
    assert restored_scheduler.state_dict() == scheduler.state_dict()

    # the sampling path: EMA weights into a fresh model; raw weights on request
    fresh = build_ema_model(path, make_loss(seed=2).model, decay=0.99)
    for name, p in fresh.named_parameters():
        assert torch.equal(p, ema.averages[0.99][name])
    assert not fresh.training
    raw = build_ema_model(checkpoint, make_loss(seed=2).model, use_ema=False)
    for name, p in raw.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[name])
    with pytest.raises(KeyError, match="0.5"):
        build_ema_model(checkpoint, make_loss().model, decay=0.5)
    with pytest.raises(ValueError, match="formulation"):
        build_ema_model(checkpoint, cfm_core.FlowMap(make_loss().model.net, formulation="x1"))


def test_a_checkpoint_without_app_version_still_loads(tmp_path):
    """Checkpoints written before the app version was recorded have no ``app_version`` key."""
    model, ema, optimizer, scheduler = _trained_state(steps=1)
    path = _save(tmp_path, 1, (model, ema, optimizer, scheduler), app_version="0.1.0")
    meta = json.loads((path / "meta.json").read_text())
    del meta["app_version"]
    (path / "meta.json").write_text(json.dumps(meta))
    checkpoint = load_checkpoint(path)
    assert "app_version" not in checkpoint.meta and checkpoint.step == 1


def test_inference_only_checkpoint_and_skipping_the_optimizer(tmp_path):
    model = make_loss().model
    path = save_checkpoint(tmp_path, 1, model, app="toy", config={})
    checkpoint = load_checkpoint(path)
    assert checkpoint.ema is None and checkpoint.optimizer is None and checkpoint.ema_decays == ()
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.safetensors"]
    loaded = build_ema_model(checkpoint, make_loss(seed=4).model)  # no EMA: the raw weights
    for name, p in loaded.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[name])

    full = _save(tmp_path / "full", 2, _trained_state(1))
    light = load_checkpoint(full, load_optimizer=False)
    assert light.optimizer is None and light.scheduler is None and light.ema is not None


def test_atomic_write_leaves_no_temporary_directories(tmp_path, monkeypatch):
    parts = _trained_state(1)
    _save(tmp_path, 1, parts)
    _save(tmp_path, 1, parts)  # re-saving a step replaces it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000001"]

    def broken_save_file(tensors, path, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", broken_save_file)
    with pytest.raises(OutputError, match=f"cannot write the checkpoint {tmp_path / 'step-0000002'}: No space left"):
        _save(tmp_path, 2, parts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000001"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-0000001"


def test_keep_last_prunes_the_oldest_and_latest_is_the_newest(tmp_path):
    parts = _trained_state(1)
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
    for step in (5, 10, 15, 20, 100):
        _save(tmp_path, step, parts, keep_last=3)
    (tmp_path / "log.jsonl").write_text("")
    (tmp_path / "step-notes").mkdir()
    assert sorted(p.name for p in tmp_path.glob("step-0*")) == ["step-0000015", "step-0000020", "step-0000100"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-0000100"
    assert load_checkpoint(tmp_path).step == 100  # a run directory means its newest checkpoint
    _save(tmp_path, 101, parts)  # keep_last=0 keeps everything
    assert len(list(tmp_path.glob("step-0*"))) == 4


@pytest.mark.parametrize(
    "name", ["meta.json", "model.safetensors", "ema-0.99.safetensors", "optimizer.safetensors", "optimizer.json"]
)
def test_missing_file_is_named(tmp_path, name):
    path = _save(tmp_path, 7, _trained_state(1))
    (path / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "name", ["meta.json", "model.safetensors", "ema-0.9.safetensors", "optimizer.safetensors", "optimizer.json"]
)
def test_corrupt_file_is_named(tmp_path, name):
    path = _save(tmp_path, 7, _trained_state(1))
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=name):
        load_checkpoint(path)


def test_meta_problems_are_reported(tmp_path):
    path = _save(tmp_path, 7, _trained_state(1))
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format": 2}))
    with pytest.raises(ValueError, match="format"):
        load_checkpoint(path)
    del meta["formulation"]
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="formulation"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        load_checkpoint(tmp_path / "empty")
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "x", 1, make_loss().model, app="toy", config={"bad": object()})
    assert not any((tmp_path / "x").iterdir())
