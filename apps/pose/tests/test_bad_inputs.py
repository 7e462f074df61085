"""Bad inputs to every pose command: exit code 2, one line naming the problem, nothing written."""

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

TINY = ["--n-points", "32", "--net.hidden", "8", "--net.depth", "1", "--net.time-dim", "8", "--net.code-dim", "8"]
TINY += ["--net.encoder-hidden", "8", "--net.encoder-depth", "1", "--net.fourier-levels", "1"]
TINY += ["--train.batch-size", "2", "--train.log-every", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step run on the procedural bodies."""
    out = tmp_path_factory.mktemp("pose") / "run"
    assert main(["pose", "train", *TINY, "--train.steps", "2", "--train.output-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def broken(run, tmp_path_factory):
    return broken_checkpoints(run, tmp_path_factory.mktemp("broken"))


@pytest.fixture
def ws(tmp_path):
    """A workspace holding outputs of an earlier run, which a refused command must leave alone."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "shape.npy", rng.normal(size=(200, 3)))
    np.save(tmp_path / "strings.npy", np.array([["a", "b", "c"]] * 20))
    np.save(tmp_path / "nan.npy", np.full((20, 3), np.nan))
    np.save(tmp_path / "flat.npy", rng.normal(size=(20, 2)))
    (tmp_path / "existing.json").write_text("{}\n")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "broken.obj").write_text("this is not a mesh")
    return tmp_path


@pytest.mark.parametrize(
    "command, case",
    CHECKPOINT_COMMAND_CASES,
)
def test_a_broken_checkpoint_is_refused(command, case, broken, ws):
    assert_broken_checkpoint_refused(
        "pose", command, *broken[case], ws, sample_args=["--input", ws / "shape.npy", "--out", ws / "existing.json"]
    )


SAMPLE = ["sample", "--input", "{ws}/shape.npy"]
CASES = {
    "out-suffix": ([*SAMPLE, "--out", "{ws}/x.txt"], ["--out must name a .json file"]),
    "out-is-folder": ([*SAMPLE, "--out", "{ws}/folder.json"], ["--out", "is a folder"]),
    "out-under-a-file": ([*SAMPLE, "--out", "{ws}/a-file/x.json"], ["--out", "a-file is a file"]),
    "input-missing": (["sample", "--input", "{ws}/none.npy", "--out", "{ws}/x.json"], ["--input", "not found"]),
    "input-strings": (["sample", "--input", "{ws}/strings.npy", "--out", "{ws}/x.json"], ["--input", "numbers"]),
    "input-nan": (["sample", "--input", "{ws}/nan.npy", "--out", "{ws}/x.json"], ["--input", "NaN or inf"]),
    "input-two-columns": (["sample", "--input", "{ws}/flat.npy", "--out", "{ws}/x.json"], ["--input", "(N, 3)"]),
    "input-not-a-mesh": (["sample", "--input", "{ws}/broken.obj", "--out", "{ws}/x.json"], ["--input"]),
    "steps-zero": ([*SAMPLE, "--out", "{ws}/x.json", "--steps", "0"], ["--steps"]),
    "bandwidth-nan": ([*SAMPLE, "--out", "{ws}/x.json", "--extraction.bandwidth", "nan"], ["bandwidth"]),
    "eval-out-is-file": (["eval", "--out", "{ws}/a-file"], ["--out", "is a file"]),
    "eval-baseline-missing": (["eval", "--out", "{ws}/e", "--baseline", "{ws}/none"], ["--baseline", "not found"]),
    "eval-n-shapes-zero": (["eval", "--out", "{ws}/e", "--n-shapes", "0"], ["--n-shapes"]),
    "smpl-without-model": (["train", "--data", "smpl"], ["--data smpl needs --smpl.model"]),
    "smpl-model-missing": (["train", "--data", "smpl", "--smpl.model", "{ws}/none.pkl"], ["--smpl.model", "not found"]),
    "rignet-root-missing": (["train", "--data", "rignet", "--rignet.root", "{ws}/none"], ["RigNet folder not found"]),
    "output-dir-is-file": (["train", "--train.output-dir", "{ws}/a-file"], ["--train.output-dir", "is a file"]),
    "data-scale-nan": (["train", "--data-scale", "nan"], ["--data-scale"]),
    "preset-late": (["train", "--n-points", "9", "--preset", "quick"], ["--preset must come first"]),
    "convert-smpl-suffix": (["convert-smpl", "{ws}/shape.npy", "{ws}/x.txt"], ["must end in .pkl or .npz"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_option_or_file_is_refused(case, ws, run):
    assert_catalogue_case_refused("pose", *CASES[case], ws, run)
