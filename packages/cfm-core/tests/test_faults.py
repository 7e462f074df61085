"""What a kill and a disk do: a training killed with SIGKILL (kill -9) at any moment, a checkpoint
write included, resumes to the log of an uninterrupted run; a full disk gives one error line and
leaves no partial files; a read-only destination is refused before any work."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from cfm_core.testing import assert_refused, run_cfm, tree_state
from cfm_core.training import Trainer, latest_checkpoint, read_log
from cfm_core.training import checkpoint as checkpoint_module
from cfm_core.training import metric_log as metric_log_module

from .test_training_fixtures import gaussian_data, make_loss, train_config

STEPS = 6


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at(moment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrange for this process to SIGKILL itself at ``moment`` of the first run."""
    if moment == "mid-step":  # building the batch of step 5
        monkeypatch.setattr(Trainer, "local_batch", _wrap(Trainer.local_batch, lambda self, step: step == 4))
    elif moment == "torn-log-line":  # half of step 3's record written

        def write(self, record):
            if record["step"] == 3:
                with self.path.open("a") as file:
                    file.write('{"step": 3, "lo')
                _die()
            original(self, record)

        original = metric_log_module.MetricLog.write
        monkeypatch.setattr(metric_log_module.MetricLog, "write", write)
    elif moment == "inside-checkpoint-write":  # step 4's weights written, its optimizer state not
        original_tensors = checkpoint_module._write_tensors

        def write_tensors(path, tensors, metadata=None):
            if path.name == "optimizer.safetensors" and "step-0000004" in path.parent.name:
                _die()
            original_tensors(path, tensors, metadata)

        monkeypatch.setattr(checkpoint_module, "_write_tensors", write_tensors)
    elif moment == "before-checkpoint-rename":  # step 4's folder complete under its temporary name
        monkeypatch.setattr(
            checkpoint_module, "_replace_dir", _wrap(checkpoint_module._replace_dir, lambda src, dst: "4" in dst.name)
        )
    elif moment == "after-checkpoint":  # right after step 2's checkpoint
        original_save = Trainer.save

        def save(self):
            path = original_save(self)
            if self.step == 2:
                _die()
            return path

        monkeypatch.setattr(Trainer, "save", save)


def _wrap(function, kill_when):
    def wrapped(*args):
        if kill_when(*args):
            _die()
        return function(*args)

    return wrapped


def _train(run_dir, moment: str | None = None) -> None:
    """One training process (forked): it resumes when the run holds a checkpoint."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        if moment is not None:
            _kill_at(moment, monkeypatch)
        resume = latest_checkpoint(run_dir) is not None
        config = train_config(run_dir, steps=STEPS, checkpoint_every=2, resume=resume)
        Trainer(make_loss(), gaussian_data, config, run_config={}, app="test").fit()


def _in_child(run_dir, moment: str | None = None) -> int:
    process = multiprocessing.get_context("fork").Process(target=_train, args=(run_dir, moment))
    process.start()
    process.join()
    return process.exitcode


def _records(run_dir):
    return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in read_log(run_dir)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The log of a run never killed, trained in this process: the forked runs inherit its warm
    state (the first forward-mode pass's one-off set-up) and its thread settings."""
    run = tmp_path_factory.mktemp("straight")
    _train(run)
    return _records(run)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork are POSIX")
@pytest.mark.parametrize(
    "moment",
    ["mid-step", "torn-log-line", "inside-checkpoint-write", "before-checkpoint-rename", "after-checkpoint"],
)
def test_a_killed_training_resumes_to_the_uninterrupted_log(tmp_path, moment, uninterrupted):
    assert _in_child(tmp_path, moment) == -signal.SIGKILL
    assert len(read_log(tmp_path, drop_torn_tail=True)) < STEPS  # killed before the end
    assert _in_child(tmp_path) == 0
    assert _records(tmp_path) == uninterrupted
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing half-written left


def _tmpfs(mount, options: str) -> None:
    """Mount a tmpfs at ``mount`` (skips the test where mounting is refused: it needs root)."""
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip() or result.returncode}")


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MiB tmpfs with about 48 KiB free."""
    mount = tmp_path / "disk"
    _tmpfs(mount, "size=2m")
    try:
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * (free - 48 * 1024))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def read_only_disk(tmp_path):
    """A read-only tmpfs holding one earlier output, ``old.npy``."""
    mount = tmp_path / "read-only"
    _tmpfs(mount, "size=1m")
    try:
        np.save(mount / "old.npy", np.zeros((2, 2)))
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_read_only_destination_is_refused_before_any_work(read_only_disk, tmp_path):
    checkpoint = read_only_disk / "none"  # refused before the checkpoint is even looked for
    for argv, option in [
        (["toy", "sample", "--checkpoint", checkpoint, "--out", read_only_disk / "old.npy"], "--out"),
        (["toy", "eval", "--checkpoint", checkpoint, "--out", read_only_disk / "eval"], "--out"),
        (["toy", "train", "--train.output-dir", read_only_disk / "run"], "--train.output-dir"),
    ]:
        assert_refused(argv, f"{option}: cannot write into {read_only_disk} (a read-only file system)")


def test_a_full_disk_is_one_error_line_and_leaves_no_partial_checkpoint(full_disk, tmp_path):
    run = full_disk / "run"
    argv = ["toy", "train", "--data", "two_moons", "--train.steps", "2", "--train.output-dir", run]
    assert_refused(argv, f"cannot write the checkpoint {run / 'step-0000002'}: ", "No space left on device")
    assert [p.name for p in run.iterdir() if p.name.startswith((".", "step-"))] == []


def test_a_sample_on_a_full_disk_keeps_the_old_output_whole(full_disk, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cfm(["toy", "train", "--data", "two_moons", "--train.steps", "2", "--train.output-dir", run])
    assert code == 0, err
    old = full_disk / "samples.npy"
    np.save(old, np.zeros((2, 2)))
    before = tree_state([full_disk])
    sample = ["toy", "sample", "--checkpoint", run, "--n", "20000", "--out", old]
    assert_refused(sample, f"cannot write {old}: No space left on device")
    assert tree_state([full_disk]) == before
