"""Training samples, value scaling, correlated noise and deterministic batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from cfm_sdf.families import random_shape
from cfm_sdf.representation import (
    RepresentationConfig,
    SdfBatch,
    ShapeRecord,
    analytic_record,
    batch,
    correlated_noise,
    decode_sdf,
    draw_sample,
    encode_sdf,
    sample_rng,
)

SMALL = RepresentationConfig(
    n_context=128,
    n_query_volume=32,
    n_query_near=48,
    n_query_surface=16,
    n_condition=64,
)


def test_encode_decode_sdf():
    d = np.array([-0.5, -0.1, 0.0, 0.05, 0.3])
    values = encode_sdf(d, 0.2)
    np.testing.assert_allclose(values, [-1.0, -0.5, 0.0, 0.25, 1.0])
    np.testing.assert_allclose(decode_sdf(values, 0.2)[1:4], d[1:4])
    assert torch.equal(encode_sdf(torch.tensor([0.4]), 0.2), torch.tensor([1.0]))


def test_correlated_noise_statistics():
    grid = 8
    cell = 2.0 / (grid - 1)
    node = -1.0 + cell * np.array([1.0, 2.0, 3.0])
    a = np.array([0.123, -0.31, 0.57])
    probes = np.stack(
        [
            node,  # a grid node (interpolation variance 1)
            node + cell / 2,  # a cell centre (interpolation variance 1/8 before normalisation)
            a,
            a + [0.01, 0.0, 0.0],  # close to a: strongly correlated
            a + [cell / 2, 0.0, 0.0],  # half a cell away: less
            a + [-0.8, 0.0, 0.0],  # about three cells away: independent
        ]
    )
    samples = 4000
    points = torch.tensor(probes, dtype=torch.float32).expand(samples, -1, -1)
    noise = correlated_noise(points, grid, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(noise.var(axis=0), 1.0, atol=0.08)
    np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=0.08)
    corr = np.corrcoef(noise.T)[2]
    assert corr[3] > 0.95
    assert corr[3] > corr[4] + 0.1
    assert 0.2 < corr[4] < 0.9
    assert abs(corr[5]) < 0.1


def test_correlated_noise_is_reproducible_and_validated():
    points = torch.rand(2, 50, 3) * 2 - 1
    first = correlated_noise(points, 16, torch.Generator().manual_seed(3))
    again = correlated_noise(points, 16, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        correlated_noise(points[0], 16)
    with pytest.raises(ValueError, match="grid_res"):
        correlated_noise(points, 1)


def test_batch_contents_match_the_analytic_shapes():
    out = batch(step=3, batch_size=2, seed=9, source="chair", config=SMALL)
    assert out.context_points.shape == (2, 128, 3) and out.context_values.shape == (2, 128)
    assert out.query_points.shape == (2, SMALL.n_query, 3) and out.surface_points.shape == (
        2,
        64,
        3,
    )
    for i in range(2):
        shape = random_shape("chair", sample_rng(9, 3, i))
        context = out.context_points[i].double().numpy()
        expected = encode_sdf(shape.sdf(context), SMALL.truncation)
        np.testing.assert_allclose(out.context_values[i].numpy(), expected, atol=1e-6)
        queries = out.query_points[i].double().numpy()
        np.testing.assert_allclose(
            out.query_values[i].numpy(), encode_sdf(shape.sdf(queries), SMALL.truncation), atol=1e-5
        )
        assert np.abs(shape.sdf(out.surface_points[i].double().numpy())).max() < 1e-6
    assert (out.query_values[:, -SMALL.n_query_surface :] == 0).all()
    assert out.context_points.abs().max() <= 1.0 and out.context_values.abs().max() <= 1.0


def test_batch_is_a_pure_function_of_step_and_seed():
    first, again = (batch(5, 3, 7, "mixed", SMALL) for _ in range(2))
    for field in dataclasses.fields(SdfBatch):
        assert torch.equal(getattr(first, field.name), getattr(again, field.name))
    other = batch(6, 3, 7, "mixed", SMALL)
    assert not torch.equal(first.context_points, other.context_points)
    prefix = batch(5, 2, 7, "mixed", SMALL)  # sample i does not depend on the batch size
    assert torch.equal(prefix.context_values, first.context_values[:2])


def test_batch_from_records_and_cond():
    records = [
        analytic_record(random_shape("shelf", np.random.default_rng(i)), np.random.default_rng(i), SMALL)
        for i in range(3)
    ]
    out = batch(0, 4, 0, source=records, config=SMALL)
    assert set(out.cond()) == {"context_points", "surface_points"}
    assert set(out.cond(conditional=False)) == {"context_points"}
    assert out.to("cpu").context_values.shape == (4, 128)


def test_bad_inputs_are_rejected():
    record = analytic_record(random_shape("stool", np.random.default_rng(0)), np.random.default_rng(0), SMALL)
    bigger = dataclasses.replace(SMALL, n_context=1000)
    with pytest.raises(ValueError, match="has 160 volume points, the sample needs 1032"):
        draw_sample(record, np.random.default_rng(0), bigger)
    with pytest.raises(ValueError, match="unknown shape family"):
        batch(0, 2, 0, "sofa", SMALL)
    with pytest.raises(ValueError, match="step"):
        batch(-1, 2, 0, "chair", SMALL)
    with pytest.raises(ValueError, match="n_context"):
        RepresentationConfig(n_context=0)
    bad = record.volume_sdf.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="volume_sdf contains NaN"):
        dataclasses.replace(record, volume_sdf=bad)
    with pytest.raises(ValueError, match="near_points must be"):
        ShapeRecord(
            record.volume_points,
            record.volume_sdf,
            record.near_points[:, :2],
            record.near_sdf,
            record.surface_points,
        )
