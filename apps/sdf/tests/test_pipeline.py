"""Mesh folder preparation: checks, normalisation, SDF samples, report, and the dataset reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from cfm_sdf.pipeline import SdfFolderDataset, prepare_mesh_folder
from cfm_sdf.primitives import Box
from cfm_sdf.representation import RepresentationConfig, ShapeRecord, batch

SIZES = dict(n_surface=256, n_volume=512, n_near=512)


@pytest.fixture(scope="module")
def mesh_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("meshes")
    box = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    box.apply_translation((3.0, -1.0, 0.5))
    box.export(folder / "box.obj")
    (folder / "sub").mkdir()
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=2.0)
    sphere.apply_translation((0.0, 5.0, 0.0))
    sphere.export(folder / "sub" / "sphere.ply")
    broken = trimesh.creation.box()
    broken.update_faces(np.arange(len(broken.faces)) >= 2)  # two triangles missing: a hole
    broken.export(folder / "broken.stl")
    inverted = trimesh.creation.box(extents=(0.5, 0.5, 0.5))
    inverted.invert()
    inverted.export(folder / "inverted.obj")
    (folder / "garbage.off").write_text("this is not a mesh\n")
    (folder / "notes.txt").write_text("not a mesh file, ignored\n")
    return folder


@pytest.fixture(scope="module")
def prepared(mesh_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    return out, prepare_mesh_folder(mesh_folder, out, seed=0, progress=False, **SIZES)


def load(out, name) -> dict:
    with np.load(out / name) as data:
        return {k: data[k] for k in data.files}


def test_broken_meshes_are_reported_and_skipped(prepared):
    out, report = prepared
    assert sorted(e["source"] for e in report.prepared) == [
        "box.obj",
        "inverted.obj",
        "sub/sphere.ply",
    ]
    skipped = {e["source"]: e["reason"] for e in report.skipped}
    assert set(skipped) == {"broken.stl", "garbage.off"}
    assert skipped["broken.stl"].startswith("not watertight")
    assert report.fixed == [{"source": "inverted.obj", "fixes": ["inverted faces (negative volume)"]}]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["skipped"] == report.skipped and on_disk["settings"]["n_volume"] == 512
    assert sorted(p.name for p in out.iterdir()) == [
        "box__obj.npz",
        "inverted__obj.npz",
        "report.json",
        "sub__sphere__ply.npz",
    ]


def test_box_is_normalised_and_its_sdf_is_exact(prepared):
    out, _ = prepared
    data = load(out, "box__obj.npz")
    np.testing.assert_allclose(data["center"], [3.0, -1.0, 0.5], atol=1e-6)
    assert np.isclose(data["scale"], 1.8)  # longest half-extent 0.5 -> 0.9
    box = Box((0.0, 0.0, 0.0), (0.9, 0.54, 0.36))  # negative inside, like the records
    for points, values in (("volume_points", "volume_sdf"), ("near_points", "near_sdf")):
        assert data[points].shape == (512, 3)
        np.testing.assert_allclose(data[values], box.sdf(data[points].astype(np.float64)), atol=1e-5)
    assert data["surface_points"].shape == (256, 3)
    assert np.abs(box.sdf(data["surface_points"].astype(np.float64))).max() < 1e-5
    assert (data["volume_sdf"] < 0).mean() > 0.1
    assert np.abs(data["volume_points"]).max() <= 1.0


def test_sphere_sdf_and_inverted_box_sign(prepared):
    out, _ = prepared
    data = load(out, "sub__sphere__ply.npz")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.9)
    # the polyhedron lies between its faces' planes and the sphere of radius 0.9
    inner = np.abs(np.einsum("ij,ij->i", sphere.face_normals, sphere.triangles[:, 0])).min()
    radius = np.linalg.norm(data["volume_points"], axis=1)
    np.testing.assert_allclose(data["volume_sdf"], radius - 0.9, atol=0.9 - inner + 1e-5)
    inverted = load(out, "inverted__obj.npz")
    box = Box((0.0, 0.0, 0.0), (0.9, 0.9, 0.9))
    np.testing.assert_allclose(inverted["volume_sdf"], box.sdf(inverted["volume_points"].astype(float)), atol=1e-5)


def test_preparation_is_deterministic_and_resumes(mesh_folder, prepared, tmp_path):
    out, _ = prepared
    again = prepare_mesh_folder(mesh_folder, tmp_path, seed=0, progress=False, **SIZES)
    assert len(again.prepared) == 3
    first, second = load(out, "box__obj.npz"), load(tmp_path, "box__obj.npz")
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    resumed = prepare_mesh_folder(mesh_folder, tmp_path, seed=0, progress=False, **SIZES)
    assert sorted(resumed.cached) == ["box.obj", "inverted.obj", "sub/sphere.ply"]
    assert resumed.prepared == []


def test_prepare_rejects_missing_or_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_mesh_folder(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no mesh files"):
        prepare_mesh_folder(tmp_path / "empty", tmp_path / "out")


def test_dataset_reads_records_and_feeds_batches(prepared):
    out, _ = prepared
    dataset = SdfFolderDataset(out)
    assert len(dataset) == 3
    record = dataset[0]
    assert isinstance(record, ShapeRecord) and record.name.endswith("box__obj.npz")
    config = RepresentationConfig(
        n_context=256,
        n_query_volume=128,
        n_query_near=128,
        n_query_surface=64,
        n_condition=64,
    )
    out_batch = batch(0, 2, 0, source=dataset, config=config)
    assert out_batch.context_values.shape == (2, 256)


def test_dataset_reports_corrupt_files(prepared, tmp_path):
    out, _ = prepared
    (tmp_path / "a_corrupt.npz").write_bytes(b"this is not a zip archive")
    data = load(out, "box__obj.npz")
    del data["near_sdf"]
    np.savez(tmp_path / "b_missing.npz", **data)
    dataset = SdfFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="a_corrupt.npz: corrupt or unreadable"):
        dataset[0]
    with pytest.raises(ValueError, match=r"b_missing.npz: missing arrays \['near_sdf'\]"):
        dataset[1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .npz records"):
        SdfFolderDataset(tmp_path / "empty")


def test_the_progress_bar_counts_a_skipped_last_mesh(tmp_path, capsys):
    folder = tmp_path / "meshes"
    folder.mkdir()
    trimesh.creation.box().export(folder / "a.obj")
    (folder / "b.off").write_text("this is not a mesh\n")
    prepare_mesh_folder(folder, tmp_path / "out", seed=0, **SIZES)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "2/2" in bar and "skipped=1" in bar
