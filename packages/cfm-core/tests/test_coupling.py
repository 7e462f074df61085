"""Minibatch-OT coupling: an optimal permutation of the noise rows, wired into the loss."""

from __future__ import annotations

import itertools

import pytest
import torch
from cfm_core.cli import ConfigError
from cfm_core.coupling import minibatch_ot_pairing
from cfm_core.method import MethodConfig, build_cfm

from .conftest import make_loss


def _cost(x, n):
    return (x - n).pow(2).sum().item()


def test_pairing_is_the_optimal_permutation_by_brute_force():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        x, noise = torch.randn(6, 3, generator=gen), torch.randn(6, 3, generator=gen)
        paired = minibatch_ot_pairing(x, noise)
        best = min(_cost(x, noise[list(p)]) for p in itertools.permutations(range(6)))
        assert _cost(x, paired) == pytest.approx(best, rel=1e-9)
        assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, noise.tolist()))


def test_blocks_pair_within_themselves_and_images_flatten():
    gen = torch.Generator().manual_seed(1)
    x, noise = torch.randn(10, 2, 2, 2, generator=gen), torch.randn(10, 2, 2, 2, generator=gen)
    paired = minibatch_ot_pairing(x, noise, block=4)
    for start in (0, 4, 8):
        rows = slice(start, start + 4)
        assert sorted(map(tuple, paired[rows].flatten(1).tolist())) == sorted(
            map(tuple, noise[rows].flatten(1).tolist())
        )
        assert _cost(x[rows], paired[rows]) <= _cost(x[rows], noise[rows]) + 1e-12


def test_pairing_refuses_mismatched_shapes_and_tiny_blocks():
    with pytest.raises(ValueError, match="same shape"):
        minibatch_ot_pairing(torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="block"):
        minibatch_ot_pairing(torch.zeros(4, 2), torch.zeros(4, 2), block=1)


class _Recorder(torch.nn.Module):
    """u-prediction net that remembers its inputs (the loss interpolates with the paired noise)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.zeros(()))
        self.inputs = []

    def forward(self, x, t, r, cond=None):
        self.inputs.append((x.detach().clone(), t.detach().clone(), r.detach().clone()))
        return self.scale * x


def test_the_loss_trains_on_the_paired_noise():
    gen = torch.Generator().manual_seed(2)
    x, noise = torch.randn(8, 2, generator=gen), torch.randn(8, 2, generator=gen)
    losses = {}
    for coupling in ("independent", "minibatch_ot"):
        torch.manual_seed(3)
        loss_fn = make_loss(_Recorder(), "u", instantaneous_ratio=1.0, coupling=coupling)
        model = loss_fn.model
        losses[coupling] = loss_fn(x, noise=noise).item()
        x_t, t, _ = model.net.inputs[-1]
        used = noise if coupling == "independent" else minibatch_ot_pairing(x, noise)
        torch.testing.assert_close(x_t, model.formulation.interpolate(x, used, t))
    assert losses["minibatch_ot"] < losses["independent"]  # straighter pairs: smaller targets


def test_conditional_models_and_bad_options_are_refused():
    loss_fn = make_loss(_Recorder(), "u", coupling="minibatch_ot")
    with pytest.raises(ValueError, match="conditional model"):
        loss_fn(torch.randn(4, 2), cond=torch.zeros(4, 1))
    with pytest.raises(ValueError, match="unknown coupling"):
        make_loss(_Recorder(), "u", coupling="sinkhorn")
    with pytest.raises(ConfigError, match="method.coupling"):
        MethodConfig(coupling="sinkhorn")
    with pytest.raises(ConfigError, match="method.ot_block"):
        MethodConfig(ot_block=1)
    built = build_cfm(_Recorder(), MethodConfig(coupling="minibatch_ot", ot_block=64))
    assert (built.recipe.coupling, built.recipe.ot_block) == ("minibatch_ot", 64)
