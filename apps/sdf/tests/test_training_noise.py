"""The training noise: the model's noise sampler draws correlated noise at the state's points (the
context, then the extra points of the condition), from the global torch RNG, one grid per row,
and the loss trains on it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from cfm_core.cli import config_to_dict
from cfm_core.model import select_condition
from cfm_core.testing import assert_rows_match_global_batch
from cfm_sdf.commands import sdf_batches
from cfm_sdf.config import SdfDataConfig, SdfNetConfig, SdfTrainConfig
from cfm_sdf.model import EXTRA_POINTS_KEY, CorrelatedNoiseSampler, build_model
from cfm_sdf.representation import correlated_noise

GRID = 8
CONFIG = SdfTrainConfig(
    data=SdfDataConfig(family="stool", n_context=64, n_query_near=16, n_query_surface=8, noise_grid=GRID),
    net=SdfNetConfig(preset="tiny"),
)
CONFIG = replace(CONFIG, train=replace(CONFIG.train, batch_size=4))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(config_to_dict(CONFIG))


@pytest.fixture(scope="module")
def training_batch():
    return sdf_batches(CONFIG, "stool")(3)


def interpolation_correlation(x1: float, x2: float, grid: int) -> float:
    """Brute force: the correlation of trilinearly interpolated iid node values at two points
    that differ only along one axis (the other axes' weights cancel)."""
    nodes = np.arange(grid)

    def weights(x: float) -> np.ndarray:
        return np.maximum(0.0, 1.0 - np.abs((x + 1.0) / 2.0 * (grid - 1) - nodes))

    a, b = weights(x1), weights(x2)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def test_the_batches_carry_points_not_noise(training_batch):
    x, cond = training_batch
    assert set(cond) == {"context_points", "surface_points", EXTRA_POINTS_KEY}
    assert x.shape == (4, 64 + 16 + 8)
    assert cond["context_points"].shape[1] + cond[EXTRA_POINTS_KEY].shape[1] == x.shape[1]


def test_training_noise_is_correlated_like_the_configured_grid(model):
    assert model.noise_sampler == CorrelatedNoiseSampler(GRID)  # --data.noise-grid
    rows, y, z = 4000, 0.3, -0.2
    along_x = [-0.05, 0.05, 0.8, 0.15, 0.0]  # 3 context points, then 2 extra points
    points = torch.tensor([[x, y, z] for x in along_x]).expand(rows, -1, -1)
    cond = {"context_points": points[:, :3], EXTRA_POINTS_KEY: points[:, 3:]}
    torch.manual_seed(0)
    noise = model.noise_sampler(torch.zeros(rows, 5), cond).numpy()
    np.testing.assert_allclose(noise.var(axis=0), 1.0, atol=0.08)
    corr = np.corrcoef(noise.T)[0]
    expected = [interpolation_correlation(along_x[0], x, GRID) for x in along_x]
    np.testing.assert_allclose(corr, expected, atol=0.05)
    assert corr[4] > 0.9 and corr[1] > 0.7  # neighbours (extra and context alike): high
    assert abs(corr[2]) < 0.05  # three cells away: independent
    # a 16^3 grid would give 0.28 for the pair 0.1 apart: the configured grid is the one used
    assert abs(interpolation_correlation(along_x[0], along_x[1], 16) - corr[1]) > 0.4
    assert abs(np.corrcoef(noise[:-1, 0], noise[1:, 0])[0, 1]) < 0.05  # one grid per row


def test_the_loss_trains_on_the_sampled_noise(model, training_batch):
    x, cond = training_batch
    points = torch.cat([cond["context_points"], cond[EXTRA_POINTS_KEY]], dim=1)
    torch.manual_seed(5)
    sampled = model(x, cond)
    torch.manual_seed(5)
    noise = correlated_noise(points, GRID)  # what the sampler draws, then the loss's times
    explicit = model(x, cond, noise=noise)
    torch.manual_seed(5)
    iid = model(x, cond, noise=torch.randn_like(x))
    assert torch.equal(sampled, explicit)
    assert not torch.equal(sampled, iid)


def test_the_sampler_sees_only_its_rows_and_the_state(model, training_batch):
    x, cond = training_batch
    rows = torch.tensor([1, 3])  # one DDP process's rows
    torch.manual_seed(7)
    part = model.noise_sampler(x[rows], select_condition(cond, rows))
    torch.manual_seed(7)
    points = torch.cat([cond["context_points"], cond[EXTRA_POINTS_KEY]], dim=1)[rows]
    assert torch.equal(part, correlated_noise(points, GRID))
    n = cond["context_points"].shape[1]
    torch.manual_seed(7)
    context_only = model.noise_sampler(x[:, :n], cond)  # a state of the context values only
    torch.manual_seed(7)
    assert torch.equal(context_only, correlated_noise(cond["context_points"], GRID))


def test_the_sampler_rejects_states_without_their_points(model, training_batch):
    x, cond = training_batch
    with pytest.raises(ValueError, match="one point per value"):
        model.noise_sampler(x[:, :-1], cond)
    with pytest.raises(ValueError, match="one point per value"):
        model.noise_sampler(x, {"context_points": cond["context_points"]})
    with pytest.raises(ValueError, match="'context_points'"):
        model.noise_sampler(x, None)


def test_each_process_builds_only_its_rows_of_the_global_batch():
    assert_rows_match_global_batch(sdf_batches(CONFIG, "stool"), step=3, world=2)
