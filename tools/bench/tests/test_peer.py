"""The peer benchmark's pieces that run without the peer: its missing-dependency message, the
checkerboard support share, MeanFlow's multi-jump sampler and the recipe variants' options."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from cfm_core import LossRecipe
from cfm_toy.data import sample_toy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_peer  # noqa: E402


def test_a_missing_bench_group_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "rectified_flow_pytorch", None)  # import fails
    with pytest.raises(SystemExit, match="uv sync --locked --group bench"):
        bench_peer.require_peer()


def test_checkerboard_support_share():
    data = sample_toy("checkerboard", 2000, generator=torch.Generator().manual_seed(0)).float()
    assert bench_peer.checker_support_share(data) == 1.0
    shifted = data + torch.tensor([bench_peer.CHECKER_CELL, 0.0])  # one square over: the light squares
    inside_board = (shifted.abs() < 2 * bench_peer.CHECKER_CELL).all(dim=1)
    assert bench_peer.checker_support_share(shifted[inside_board]) == 0.0
    assert bench_peer.checker_support_share(torch.full((10, 2), 5.0)) == 0.0  # off the board


class _ConstantVelocity(torch.nn.Module):
    """A MeanFlow stand-in whose ``model(z, t, delta, cond)`` is a velocity ``(t + delta)``."""

    def model(self, z, t, delta, cond=None):
        return (t + delta)[:, None].expand_as(z)


def test_meanflow_sampler_jumps_on_a_uniform_grid():
    noise = torch.zeros(3, 2)
    # one jump: z - 1 * (1 + 1); two jumps: - 0.5 * (1 + 0.5) - 0.5 * (0.5 + 0.5)
    assert torch.allclose(bench_peer.meanflow_sample(_ConstantVelocity(), noise, 1), torch.full((3, 2), -2.0))
    assert torch.allclose(bench_peer.meanflow_sample(_ConstantVelocity(), noise, 2), torch.full((3, 2), -1.25))


@pytest.mark.parametrize("variants", [bench_peer.RECIPE_VARIANTS, bench_peer.DIGITS_RECIPE_VARIANTS])
def test_every_recipe_variant_is_a_valid_recipe_named_by_its_options(variants):
    names = [bench_peer.recipe_name(options) for options in variants]
    assert len(set(names)) == len(names) and names[0] == "core default"
    for options in variants:
        LossRecipe(**options)  # raises on a misspelt option or an invalid value
    assert bench_peer.recipe_name({"adaptive_p": 0.5, "fd_step": 0.02}) == "adaptive_p=0.5, fd_step=0.02"


def test_target_notes_say_which_scores_beat_the_peer_and_by_how_much_the_others_miss():
    quality = bench_peer.Table(
        "q",
        ["model", "1 step rel. ED", "1 step in squares", "2 steps FD", "2 steps accuracy"],
        [["ours (u)", 0.5, 0.5, 16.0, 0.9], ["MeanFlow (rectified-flow-pytorch)", 1.0, 0.7, 10.0, 0.1]],
    )
    (note,) = bench_peer.target_notes(quality)
    assert "1 step rel. ED: 0.5 against 1, met" in note
    assert "1 step in squares: 0.5 against 0.7, missed by 0.2" in note
    assert "2 steps FD: 16 against 10, missed by 6" in note
    assert "accuracy" not in note  # not a target score
