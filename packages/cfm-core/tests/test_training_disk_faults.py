"""Resume after what a disk and a kill leave: a truncated newest checkpoint, a torn log line, a
half-written temporary checkpoint folder."""

from __future__ import annotations

import pytest
from cfm_core.cli import ConfigError
from cfm_core.training import Trainer, read_log

from .test_training_fixtures import gaussian_data, make_loss, train_config


def _trainer(run_dir, steps, resume=False, **options):
    config = train_config(run_dir, steps=steps, checkpoint_every=2, resume=resume, **options)
    return Trainer(make_loss(), gaussian_data, config, run_config={}, app="test")


def _losses(run_dir):
    return [(r["step"], r["loss"]) for r in read_log(run_dir)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 6-step run: its log."""
    run = tmp_path_factory.mktemp("straight")
    _trainer(run, 6).fit()
    return _losses(run)


def test_an_unreadable_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, straight):
    _trainer(tmp_path, 4).fit()
    weights = tmp_path / "step-0000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # what a disk that lost the end leaves
    resumed = _trainer(tmp_path, 6, resume=True)
    out = capsys.readouterr().out
    assert resumed.step == 2
    assert f"warning: cannot read the checkpoint step-0000004 (corrupt checkpoint file {weights}" in out
    assert f"resuming from {tmp_path / 'step-0000002'} instead" in out
    resumed.fit()
    assert _losses(tmp_path) == straight


def test_no_readable_checkpoint_at_all_is_one_error_naming_each(tmp_path):
    _trainer(tmp_path, 2).fit()
    (tmp_path / "step-0000002" / "meta.json").write_text("{")
    with pytest.raises(ConfigError, match="no readable checkpoint in .*step-0000002 \\(corrupt checkpoint file"):
        _trainer(tmp_path, 6, resume=True)


def test_a_torn_last_log_line_is_dropped_with_a_warning(tmp_path, capsys, straight):
    _trainer(tmp_path, 4).fit()
    log = tmp_path / "log.jsonl"
    log.write_text(log.read_text() + '{"step": 5, "loss": 0.3')  # a kill during the write
    resumed = _trainer(tmp_path, 6, resume=True)
    assert f"{log}, line 5: torn last record left out" in capsys.readouterr().err
    resumed.fit()
    assert _losses(tmp_path) == straight


def test_a_bad_log_line_before_the_last_is_an_error(tmp_path):
    _trainer(tmp_path, 4).fit()
    log = tmp_path / "log.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(ConfigError, match=f"resume: {log}, line 2: not a JSON record"):
        _trainer(tmp_path, 6, resume=True)


def test_stale_temporary_checkpoint_folders_are_removed_at_start(tmp_path, capsys):
    _trainer(tmp_path, 2).fit()
    stale = [tmp_path / ".tmp-step-0000004-4242-0a1b2c3d", tmp_path / ".old-step-0000002-0a1b2c3d"]
    for folder in stale:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    keep = tmp_path / ".tmp-notes"
    keep.mkdir()
    _trainer(tmp_path, 4, resume=True)
    out = capsys.readouterr().out
    assert all(not folder.exists() and f"removed {folder}" in out for folder in stale)
    assert keep.exists()
