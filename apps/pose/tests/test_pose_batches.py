"""The trainer's ``data(step, rows)``: a process builds only its rows of the global batch, and
they are exactly those rows of the whole batch (inputs and condition), for every data source."""

from __future__ import annotations

import shutil

import pytest
import torch
import trimesh
from cfm_core.cli import main
from cfm_core.testing import assert_rows_match_global_batch
from cfm_core.training import latest_checkpoint, load_checkpoint
from cfm_pose.commands import pose_batches
from cfm_pose.config import PoseTrainConfig, ProceduralConfig, RigNetConfig, SmplConfig
from cfm_pose.encoding import encoding_for
from cfm_pose.smpl_synthetic import write_synthetic_smpl_model
from cfm_pose.sources import make_source, with_detected_model_type

TINY = [
    "--n-points",
    "64",
    "--net.hidden",
    "16",
    "--net.depth",
    "1",
    "--net.code-dim",
    "16",
    "--net.encoder-hidden",
    "16",
    "--net.encoder-depth",
    "1",
    "--train.batch-size",
    "4",
    "--train.log-every",
    "2",
    "--train.sample-every",
    "0",
]
RIG = """joints hips 0.0 0.5 0.0
joints spine 0.0 0.7 0.0
joints head 0.0 0.9 0.1
root hips
hier hips spine
hier spine head
"""


def _data(cfg: PoseTrainConfig, batch_size: int = 4):
    source = make_source(cfg, read_all=True)
    return pose_batches(source, encoding_for(with_detected_model_type(cfg, source)), batch_size, seed=5)


@pytest.mark.parametrize("template", ["mixed", "biped"])
def test_procedural_rows_are_those_of_the_global_batch(template):
    data = _data(PoseTrainConfig(n_points=64, procedural=ProceduralConfig(template)))
    assert_rows_match_global_batch(data, step=3, world=2)


def test_smpl_rows_are_those_of_the_global_batch(tmp_path):
    model = write_synthetic_smpl_model(tmp_path / "SMPL_NEUTRAL.pkl")
    data = _data(PoseTrainConfig(data="smpl", n_points=64, smpl=SmplConfig(model=str(model))))
    # smplx poses the bodies in batched float32 matrix products: equal up to their reduction order
    assert_rows_match_global_batch(data, step=3, world=2, atol=1e-6)


def test_rignet_rows_are_those_of_the_global_batch(tmp_path):
    for sub in ("obj", "rig_info"):
        (tmp_path / sub).mkdir()
    for name, height in (("1", 1.0), ("2", 1.2), ("3", 0.8)):
        box = trimesh.creation.box(extents=(0.3, height, 0.3))
        box.apply_translation([0, height / 2, 0])
        box.export(tmp_path / "obj" / f"{name}.obj")
        (tmp_path / "rig_info" / f"{name}.txt").write_text(RIG)
    rignet = RigNetConfig(root=str(tmp_path), split="all", eval_split="all")
    data = _data(PoseTrainConfig(data="rignet", n_points=64, rignet=rignet), batch_size=6)
    assert_rows_match_global_batch(data, step=3, world=2)


def test_data_workers_train_and_resume_exactly_as_the_training_process(tmp_path):
    """Procedural shapes built by two worker processes, with a resume in the middle, train the
    weights the training process alone trains."""
    run = ["pose", "train", *TINY, "--train.steps", "4", "--train.checkpoint-every", "2", "--train.keep-last", "0"]
    assert main([*run, "--train.output-dir", str(tmp_path / "plain")]) == 0
    workers = [*run, "--train.output-dir", str(tmp_path / "workers"), "--train.data-workers", "2"]
    assert main(workers) == 0
    shutil.rmtree(tmp_path / "workers" / "step-0000004")
    assert main([*workers, "--train.resume"]) == 0
    plain, resumed = (load_checkpoint(latest_checkpoint(tmp_path / name)) for name in ("plain", "workers"))
    assert resumed.step == 4
    for name, value in plain.model.items():
        assert torch.equal(value, resumed.model[name]), name
