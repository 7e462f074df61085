"""Bad inputs to every geometry command: exit code 2, one line naming the problem, nothing written."""

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

TINY = ["--net.width", "8", "--net.depth", "1", "--net.fourier-levels", "1", "--points", "500"]
TINY += ["--preview-points", "0", "--train.batch-size", "64", "--train.warmup-steps", "0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step run on the built-in sphere."""
    out = tmp_path_factory.mktemp("geometry") / "run"
    argv = ["geometry", "train", *TINY, "--shape", "sphere", "--train.steps", "2", "--train.output-dir", str(out)]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def broken(run, tmp_path_factory):
    return broken_checkpoints(run, tmp_path_factory.mktemp("broken"))


@pytest.fixture
def ws(tmp_path):
    """A workspace holding outputs of an earlier run, which a refused command must leave alone."""
    (tmp_path / "existing.ply").write_text("ply\n")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "folder.ply").mkdir()
    (tmp_path / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")
    (tmp_path / "shape.abc").write_text("?")
    np.save(tmp_path / "one.npy", np.zeros((1, 3)))
    np.save(tmp_path / "strings.npy", np.array([["a", "b", "c"]] * 4))
    np.save(tmp_path / "flat.npy", np.zeros((5, 2)))
    return tmp_path


@pytest.mark.parametrize(
    "command, case",
    CHECKPOINT_COMMAND_CASES,
)
def test_a_broken_checkpoint_is_refused(command, case, broken, ws):
    assert_broken_checkpoint_refused("geometry", command, *broken[case], ws, sample_args=["--out", ws / "existing.ply"])


CASES = {
    "out-suffix": (["sample", "--out", "{ws}/x.obj"], ["--out", "must end in .ply or"]),
    "out-is-folder": (["sample", "--out", "{ws}/folder.ply"], ["--out", "is a folder"]),
    "out-under-a-file": (["sample", "--out", "{ws}/a-file/x.ply"], ["--out", "a-file is a file"]),
    "points-zero": (["sample", "--out", "{ws}/x.ply", "--points", "0"], ["--points"]),
    "steps-zero": (["sample", "--out", "{ws}/x.ply", "--steps", "0"], ["--steps"]),
    "unknown-ema-decay": (["sample", "--out", "{ws}/x.ply", "--ema-decay", "0.5"], ["no EMA with decay 0.5"]),
    "eval-out-is-file": (["eval", "--out", "{ws}/a-file"], ["--out", "is a file"]),
    "eval-f-threshold": (["eval", "--out", "{ws}/e", "--f-threshold", "2.0"], ["--f-threshold"]),
    "eval-f-threshold-nan": (["eval", "--out", "{ws}/e", "--f-threshold", "nan"], ["--f-threshold"]),
    "eval-reference-missing": (["eval", "--out", "{ws}/e", "--reference", "{ws}/none.ply"], ["--reference"]),
    "eval-reference-nan-mesh": (["eval", "--out", "{ws}/e", "--reference", "{ws}/nan.obj"], ["NaN or inf"]),
    "eval-baseline-missing": (["eval", "--out", "{ws}/e", "--baseline", "{ws}/none"], ["--baseline", "not found"]),
    "mesh-missing": (["train", "--mesh", "{ws}/none.obj"], ["--mesh: shape file not found"]),
    "mesh-nan": (["train", "--mesh", "{ws}/nan.obj"], ["--mesh", "NaN or inf"]),
    "mesh-one-point": (["train", "--mesh", "{ws}/one.npy"], ["--mesh", "coincide"]),
    "mesh-strings": (["train", "--mesh", "{ws}/strings.npy"], ["--mesh", "strings.npy"]),
    "mesh-two-columns": (["train", "--mesh", "{ws}/flat.npy"], ["--mesh", "(N, 3)"]),
    "mesh-unknown-format": (["train", "--mesh", "{ws}/shape.abc"], ["--mesh", "unknown shape format"]),
    "unknown-shape": (["train", "--shape", "teapot"], ["invalid choice 'teapot'"]),
    "points-zero-train": (["train", "--points", "0"], ["--points"]),
    "points-beyond-memory": (["train", "--points", str(10**14)], ["--points", "GiB of memory"]),
    "output-dir-is-file": (["train", "--train.output-dir", "{ws}/a-file"], ["--train.output-dir", "is a file"]),
    "lr-nan": (["train", "--train.lr", "nan"], ["lr", "nan"]),
    "preset-late": (["train", "--points", "9", "--preset", "quick"], ["--preset must come first"]),
    "set-size": (["train", "--net.backbone", "point_transformer", "--train.batch-size", "100"], ["net.set_size"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_option_or_file_is_refused(case, ws, run):
    assert_catalogue_case_refused("geometry", *CASES[case], ws, run)
