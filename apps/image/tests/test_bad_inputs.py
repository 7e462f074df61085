"""Bad inputs to every image command: exit code 2, one line naming the problem, nothing written."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from cfm_core.testing import (
    CHECKPOINT_COMMAND_CASES,
    assert_broken_checkpoint_refused,
    assert_catalogue_case_refused,
    assert_refused,
    broken_checkpoints,
)
from cfm_core.training import latest_checkpoint
from PIL import Image


@pytest.fixture(scope="module")
def broken(tiny_image_run, tmp_path_factory):
    return broken_checkpoints(tiny_image_run, tmp_path_factory.mktemp("broken"))


@pytest.fixture
def ws(tmp_path):
    """A workspace holding outputs of an earlier run, which a refused command must leave alone."""
    Image.new("L", (4, 4), 9).save(tmp_path / "existing.png")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "not-a-tar.tar").write_text("not a tar archive")
    (tmp_path / "no-images").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "command, case",
    CHECKPOINT_COMMAND_CASES,
)
def test_a_broken_checkpoint_is_refused(command, case, broken, ws):
    assert_broken_checkpoint_refused("image", command, *broken[case], ws, sample_args=["--grid", ws / "existing.png"])


class _CreatesFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _stored_data(run, into, **data):
    copy = into / "stranger"
    shutil.copytree(latest_checkpoint(run), copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["config"]["data"].update(data)
    (copy / "meta.json").write_text(json.dumps(meta))
    return copy


CASES = {
    # sample
    "grid-suffix": (["sample", "--grid", "{ws}/x.jpg"], ["--grid", "must end in .png"]),
    "grid-is-folder": (["sample", "--grid", "{ws}/folder.png"], ["--grid", "is a folder"]),
    "grid-under-a-file": (["sample", "--grid", "{ws}/a-file/x.png"], ["--grid", "a-file is a file"]),
    "individual-dir-is-file": (["sample", "--individual-dir", "{ws}/a-file"], ["--individual-dir", "is a file"]),
    "guidance-nan": (["sample", "--grid", "{ws}/g.png", "--guidance", "nan"], ["--guidance must be a finite"]),
    "guidance-inf": (["sample", "--grid", "{ws}/g.png", "--guidance", "inf"], ["--guidance must be a finite"]),
    "label-out-of-range": (["sample", "--grid", "{ws}/g.png", "--labels", "10"], ["--labels: class 10"]),
    "labels-and-unconditional": (
        ["sample", "--grid", "{ws}/g.png", "--labels", "1", "--unconditional"],
        ["give --labels or --unconditional"],
    ),
    "no-output": (["sample", "--grid", "None"], ["nothing to write"]),
    "steps-zero": (["sample", "--grid", "{ws}/g.png", "--steps", "0"], ["--steps must be a positive integer"]),
    "steps-not-a-number": (["sample", "--grid", "{ws}/g.png", "--steps", "two"], ["--steps", "'two'"]),
    "unknown-sampler": (["sample", "--grid", "{ws}/g.png", "--sampler", "rk4"], ["invalid choice 'rk4'"]),
    "unknown-ema-decay": (["sample", "--grid", "{ws}/g.png", "--ema-decay", "0.5"], ["no EMA with decay 0.5"]),
    # eval
    "eval-out-is-file": (["eval", "--out", "{ws}/a-file"], ["--out", "is a file"]),
    "eval-n-too-small": (["eval", "--out", "{ws}/e", "--n", "3"], ["--n must be at least 10"]),
    "eval-missing-baseline": (["eval", "--out", "{ws}/e", "--baseline", "{ws}/nowhere"], ["--baseline", "not found"]),
    "fid-weights-missing": (
        ["eval", "--out", "{ws}/e", "--fid-weights", "{ws}/no.pth"],
        ["--fid-weights", "not found"],
    ),
    "fid-weights-unpublished": (
        ["eval", "--out", "{ws}/e", "--fid-weights", "{ws}/existing.png"],
        ["--fid-weights", "is not the published"],
    ),
    "fid-weights-not-tensors": (
        ["eval", "--out", "{ws}/e", "--fid-weights", "{ws}/existing.png", "--allow-unverified-fid-weights"],
        ["--fid-weights", "is not a plain tensor file"],
    ),
    # train
    "resolution-too-large": (["train", "--data.resolution", "100000"], ["--data.resolution", "GiB of memory"]),
    "shards-not-tar": (["train", "--data.shards", "{ws}/not-a-tar.tar"], ["{ws}/not-a-tar.tar is not a tar file"]),
    "shards-missing": (["train", "--data.shards", "{ws}/none-{{0..1}}.tar"], ["data.shards", "not found"]),
    "folder-missing": (["train", "--data.folder", "{ws}/nowhere"], ["data.folder"]),
    "folder-without-images": (["train", "--data.folder", "{ws}/no-images"], ["data.folder"]),
    "folder-and-shards": (
        ["train", "--data.folder", "{ws}/no-images", "--data.shards", "{ws}/not-a-tar.tar"],
        ["give --data.folder or --data.shards"],
    ),
    "output-dir-is-file": (["train", "--train.output-dir", "{ws}/a-file"], ["--train.output-dir", "is a file"]),
    "output-dir-under-file": (["train", "--train.output-dir", "{ws}/a-file/run"], ["a-file is a file"]),
    "resume-without-checkpoint": (["train", "--train.output-dir", "{ws}/new", "--train.resume"], ["no checkpoint"]),
    "lr-nan": (["train", "--train.lr", "nan"], ["lr", "nan"]),
    "preset-late": (["train", "--train.steps", "3", "--preset", "quick"], ["--preset must come first"]),
    "preset-unknown": (["train", "--preset", "huge"], ["unknown preset 'huge'"]),
    "unknown-option": (["train", "--train.stepz", "3"], ["Unrecognized options: --train.stepz"]),
    "builtin-rgb": (["train", "--data.channels", "3"], ["built-in digits images are grey"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_option_or_file_is_refused(case, ws, tiny_image_run):
    assert_catalogue_case_refused("image", *CASES[case], ws, tiny_image_run)


def test_a_run_directory_with_checkpoints_is_not_overwritten(ws, tiny_image_run):
    assert_refused(
        ["image", "train", "--train.output-dir", tiny_image_run],
        "already holds checkpoints",
        unchanged=[ws, tiny_image_run],
    )


@pytest.mark.parametrize("unverified", [False, True], ids=["checked", "unverified"])
def test_a_crafted_pickle_as_fid_weights_runs_nothing(ws, tiny_image_run, unverified):
    marker = ws / "marker"
    crafted = ws / "crafted.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": _CreatesFile(marker)}, crafted)
    argv = ["image", "eval", "--checkpoint", tiny_image_run, "--out", ws / "e", "--fid-weights", crafted]
    assert_refused([*argv, *["--allow-unverified-fid-weights"] * unverified], "--fid-weights", unchanged=[ws])
    assert not marker.exists()


def test_a_pipe_shard_stored_in_a_checkpoint_runs_nothing(ws, tiny_image_run):
    marker = ws / "marker"
    stranger = _stored_data(tiny_image_run, ws, shards=f"pipe:touch {marker}")
    argv = ["image", "eval", "--checkpoint", stranger, "--out", ws / "e", "--n", "10", "--baseline-steps"]
    assert_refused(argv, "is not a plain local path", unchanged=[ws])
    assert not marker.exists()
