"""Bad inputs to every toy command: exit code 2, one line naming the problem, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from cfm_core.cli import main
from cfm_core.testing import (
    CHECKPOINT_COMMAND_CASES,
    assert_broken_checkpoint_refused,
    assert_catalogue_case_refused,
    broken_checkpoints,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step run on two moons."""
    out = tmp_path_factory.mktemp("toy") / "run"
    argv = ["--net.hidden", "8", "--net.depth", "1", "--train.steps", "2", "--train.batch-size", "8"]
    assert main(["toy", "train", "--data", "two_moons", *argv, "--train.output-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def broken(run, tmp_path_factory):
    return broken_checkpoints(run, tmp_path_factory.mktemp("broken"))


@pytest.fixture
def ws(tmp_path):
    """A workspace holding outputs of an earlier run, which a refused command must leave alone."""
    np.save(tmp_path / "existing.npy", np.zeros((3, 2)))
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "folder.npy").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "command, case",
    CHECKPOINT_COMMAND_CASES,
)
def test_a_broken_checkpoint_is_refused(command, case, broken, ws):
    assert_broken_checkpoint_refused("toy", command, *broken[case], ws, sample_args=["--out", ws / "existing.npy"])


CASES = {
    "out-suffix": (["sample", "--out", "{ws}/x.txt"], ["--out", "must end in .npy"]),
    "out-is-folder": (["sample", "--out", "{ws}/folder.npy"], ["--out", "is a folder"]),
    "out-under-a-file": (["sample", "--out", "{ws}/a-file/x.npy"], ["--out", "a-file is a file"]),
    "n-zero": (["sample", "--out", "{ws}/x.npy", "--n", "0"], ["--n"]),
    "steps-zero": (["sample", "--out", "{ws}/x.npy", "--steps", "0"], ["--steps"]),
    "ema-decay-nan": (["sample", "--out", "{ws}/x.npy", "--ema-decay", "nan"], ["--ema-decay must be a finite"]),
    "eval-out-is-file": (["eval", "--out", "{ws}/a-file"], ["--out", "is a file"]),
    "eval-baseline-missing": (["eval", "--out", "{ws}/e", "--baseline", "{ws}/none"], ["--baseline", "not found"]),
    "eval-no-cfm-steps": (["eval", "--out", "{ws}/e", "--cfm-steps"], ["cfm"]),
    "demo-out-is-file": (["demo", "--out", "{ws}/a-file"], ["--out", "is a file"]),
    "unknown-data": (["train", "--data", "circles"], ["invalid choice 'circles'"]),
    "output-dir-is-file": (["train", "--train.output-dir", "{ws}/a-file"], ["--train.output-dir", "is a file"]),
    "lr-nan": (["train", "--train.lr", "nan"], ["lr", "nan"]),
    "lr-negative": (["train", "--train.lr", "-1"], ["lr"]),
    "preset-late": (["train", "--train.steps", "9", "--preset", "quick"], ["--preset must come first"]),
    "preset-unknown": (["train", "--preset", "fast"], ["unknown preset 'fast'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_option_or_file_is_refused(case, ws, run):
    assert_catalogue_case_refused("toy", *CASES[case], ws, run)
