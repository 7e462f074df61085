"""The trainer's ``data(step, rows)``: a process builds only its rows of the global batch, and
they are exactly those rows of the whole batch (inputs and condition), for every data source."""

from __future__ import annotations

import pytest
import trimesh
from cfm_core.testing import assert_rows_match_global_batch
from cfm_pose.commands import pose_batches
from cfm_pose.config import PoseTrainConfig, ProceduralConfig, RigNetConfig, SmplConfig
from cfm_pose.encoding import encoding_for
from cfm_pose.smpl_synthetic import write_synthetic_smpl_model
from cfm_pose.sources import make_source, with_detected_model_type

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
