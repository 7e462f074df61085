"""Bad inputs to every sdf command: exit code 2, one line naming the problem, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from cfm_core.cli import main
from cfm_core.testing import (
    CHECKPOINT_COMMAND_CASES,
    assert_broken_checkpoint_refused,
    assert_catalogue_case_refused,
    broken_checkpoints,
)

TINY = ["--net.preset", "tiny", "--data.n-context", "64", "--data.n-query-near", "32", "--data.n-query-surface", "8"]
TINY += ["--data.noise-grid", "8", "--train.batch-size", "2", "--train.sample-every", "0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step run on the procedural shapes."""
    out = tmp_path_factory.mktemp("sdf") / "run"
    assert main(["sdf", "train", *TINY, "--train.steps", "2", "--train.output-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def broken(run, tmp_path_factory):
    return broken_checkpoints(run, tmp_path_factory.mktemp("broken"))


@pytest.fixture
def ws(tmp_path):
    """A workspace holding outputs of an earlier run, which a refused command must leave alone."""
    (tmp_path / "existing.obj").write_text("v 0 0 0\n")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "folder.obj").mkdir()
    (tmp_path / "no-meshes").mkdir()
    (tmp_path / "meshes").mkdir()
    trimesh.creation.icosphere(subdivisions=1).export(tmp_path / "meshes" / "ball.obj")
    np.save(tmp_path / "points.npy", np.random.default_rng(0).uniform(-0.5, 0.5, size=(200, 3)))
    np.save(tmp_path / "nan-points.npy", np.full((50, 3), np.nan))
    np.save(tmp_path / "strings.npy", np.array([["a", "b", "c"]] * 20))
    return tmp_path


@pytest.mark.parametrize(
    "command, case",
    CHECKPOINT_COMMAND_CASES,
)
def test_a_broken_checkpoint_is_refused(command, case, broken, ws):
    assert_broken_checkpoint_refused("sdf", command, *broken[case], ws, sample_args=["--out", ws / "existing.obj"])


CASES = {
    "out-suffix": (["sample", "--out", "{ws}/x.stl"], ["--out", "must end in .obj or .ply"]),
    "out-is-folder": (["sample", "--out", "{ws}/folder.obj"], ["--out", "is a folder"]),
    "out-under-a-file": (["sample", "--out", "{ws}/a-file/x.obj"], ["--out", "a-file is a file"]),
    "guidance-nan": (["sample", "--out", "{ws}/x.obj", "--guidance", "nan"], ["guidance"]),
    "resolution-too-small": (["sample", "--out", "{ws}/x.obj", "--resolution", "4"], ["--resolution"]),
    "resolution-beyond-memory": (
        ["sample", "--out", "{ws}/x.obj", "--points", "{ws}/points.npy", "--resolution", "100000"],
        ["--resolution", "GiB of memory"],
    ),
    "eval-resolution-beyond-memory": (["eval", "--out", "{ws}/e", "--resolution", "100000"], ["GiB of memory"]),
    "points-missing": (["sample", "--out", "{ws}/x.obj", "--points", "{ws}/none.npy"], ["--points"]),
    "points-nan": (["sample", "--out", "{ws}/x.obj", "--points", "{ws}/nan-points.npy"], ["--points"]),
    "points-strings": (["sample", "--out", "{ws}/x.obj", "--points", "{ws}/strings.npy"], ["--points"]),
    "eval-out-is-file": (["eval", "--out", "{ws}/a-file"], ["--out", "is a file"]),
    "eval-folder-missing": (["eval", "--out", "{ws}/e", "--folder", "{ws}/none"], ["--folder"]),
    "eval-baseline-missing": (["eval", "--out", "{ws}/e", "--baseline", "{ws}/none"], ["--baseline", "not found"]),
    "prepare-folder-missing": (["prepare", "{ws}/none", "{ws}/records"], ["MESH_FOLDER", "not found"]),
    "prepare-no-meshes": (["prepare", "{ws}/no-meshes", "{ws}/records"], ["MESH_FOLDER", "no mesh files"]),
    "prepare-out-is-file": (["prepare", "{ws}/meshes", "{ws}/a-file"], ["OUT", "is a file"]),
    "prepare-near-std-nan": (["prepare", "{ws}/meshes", "{ws}/records", "--near-std", "nan"], ["--near-std"]),
    "train-folder-missing": (["train", "--data.folder", "{ws}/none"], ["data.folder"]),
    "output-dir-is-file": (["train", "--train.output-dir", "{ws}/a-file"], ["--train.output-dir", "is a file"]),
    "lr-nan": (["train", "--train.lr", "nan"], ["lr", "nan"]),
    "preset-late": (["train", "--train.steps", "9", "--preset", "quick"], ["--preset must come first"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_option_or_file_is_refused(case, ws, run):
    assert_catalogue_case_refused("sdf", *CASES[case], ws, run)
