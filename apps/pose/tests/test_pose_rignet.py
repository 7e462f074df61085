"""RigNet rig files and folders, and the ray-cast joint tolerance."""

import numpy as np
import pytest
import trimesh
from cfm_pose.rignet import load_rig_info, load_rignet_character, load_rignet_folder
from cfm_pose.skeleton import Skeleton
from cfm_pose.tolerance import local_shape_radius

RIG = """joints hips 0.0 0.5 0.0
joints spine 0.0 0.7 0.0
joints head 0.0 0.9 0.1
joints leg -0.1 0.2 0.0
root hips
skin 0 hips 0.7 spine 0.3
hier hips spine
hier spine head
hier hips leg
"""


def _write_character(folder, character_id, rig=RIG):
    (folder / "obj").mkdir(parents=True, exist_ok=True)
    (folder / "rig_info").mkdir(parents=True, exist_ok=True)
    trimesh.creation.box(extents=(0.4, 1.0, 0.4)).export(folder / "obj" / f"{character_id}.obj")
    (folder / "rig_info" / f"{character_id}.txt").write_text(rig)


def test_rig_file_gives_joints_hierarchy_and_names(tmp_path):
    _write_character(tmp_path, "17")
    mesh, skeleton = load_rignet_character(tmp_path / "obj/17.obj", tmp_path / "rig_info/17.txt")
    assert len(mesh.faces) == 12
    assert skeleton.names == ("hips", "spine", "head", "leg")
    np.testing.assert_array_equal(skeleton.parents, [-1, 0, 1, 0])
    np.testing.assert_allclose(skeleton.joints[2], [0.0, 0.9, 0.1])


@pytest.mark.parametrize(
    ("rig", "message"),
    [
        (RIG + "hier spine ghost\n", r"10: unknown joint 'ghost'"),
        (RIG + "root spine\n", "exactly one 'root' line, found 2"),
        (RIG.replace("root hips\n", ""), "exactly one 'root' line, found 0"),
        (RIG + "hier head leg\n", "joint 'leg' is a joint with a parent"),
        (RIG + "hier head hips\n", "joint 'hips' is the root"),
        (RIG.replace("hier hips leg\n", ""), "without a parent"),
        (RIG.replace("0.9 0.1", "0.9 zz"), r"3: bad joint coordinate"),
        (RIG + "bones a b\n", "cannot parse line"),
        ("joints a 0 0 0\njoints b 0 1 0\njoints c 0 2 0\nroot a\nhier c b\nhier b c\n", "cycle"),
    ],
)
def test_bad_rig_files_name_the_file_and_problem(tmp_path, rig, message):
    path = tmp_path / "rig.txt"
    path.write_text(rig)
    with pytest.raises(ValueError, match=message) as error:
        load_rig_info(path)
    assert str(path) in str(error.value)


def test_folder_layout_splits_and_missing_files(tmp_path):
    for character_id in ("3", "11"):
        _write_character(tmp_path, character_id)
    folder = load_rignet_folder(tmp_path)
    assert folder.ids == ("11", "3") and len(folder) == 2
    character_id, mesh, skeleton = folder[1]
    assert character_id == "3" and skeleton.num_joints == 4 and len(mesh.vertices) == 8
    (tmp_path / "test_final.txt").write_text("3\n\n")
    assert load_rignet_folder(tmp_path, "test").ids == ("3",)
    with pytest.raises(FileNotFoundError, match="train_final.txt"):
        load_rignet_folder(tmp_path, "train")
    (tmp_path / "obj" / "11.obj").unlink()
    with pytest.raises(FileNotFoundError, match="11.obj"):
        load_rignet_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_rignet_folder(tmp_path / "nowhere")
    (tmp_path / "obj" / "3.obj").write_text("this is not an obj\n")
    with pytest.raises(ValueError, match="3.obj"):
        load_rignet_folder(tmp_path, "test")[0]


def test_local_shape_radius_on_a_cylinder():
    mesh = trimesh.creation.cylinder(radius=0.2, height=2.0, sections=64)
    skeleton = Skeleton(np.array([[0, 0, -0.5], [0, 0, 0], [0, 0, 0.5], [0, 0, 3.0]]), np.array([-1, 0, 1, 2]))
    radius = local_shape_radius(mesh, skeleton)
    np.testing.assert_allclose(radius[:3], 0.2, rtol=2e-3)
    # the last joint is outside the mesh: no ray hits, so its distance to the top cap is used
    assert radius[3] == pytest.approx(2.0)
