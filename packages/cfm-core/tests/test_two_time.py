"""The two-time embedding and the exact warm start from a single-time (multi-step) checkpoint."""

from __future__ import annotations

import pytest
import torch
from cfm_core.nn import TimeMLPEmbedding, TwoTimeEmbedding, load_single_time_state_dict
from torch import nn


class SingleTimeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.time_embed = TimeMLPEmbedding(16)
        self.body = nn.Sequential(nn.Linear(2 + 16, 32), nn.SiLU(), nn.Linear(32, 2))

    def forward(self, x, t):
        return self.body(torch.cat([x, self.time_embed(t)], 1))


class TwoTimeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.time_embed = TwoTimeEmbedding(TimeMLPEmbedding(16))
        self.body = nn.Sequential(nn.Linear(2 + 16, 32), nn.SiLU(), nn.Linear(32, 2))

    def forward(self, x, t, r, cond=None):
        return self.body(torch.cat([x, self.time_embed(t, r)], 1))


def test_copy_initialisation_is_exact_at_equal_times():
    emb = TwoTimeEmbedding(TimeMLPEmbedding(8))
    t = torch.rand(10)
    torch.testing.assert_close(emb(t, t), emb.emb_t(t), rtol=0, atol=0)
    assert not torch.allclose(emb(t, t * 0.5), emb.emb_t(t))


def test_single_time_checkpoint_warm_starts_exactly():
    torch.manual_seed(0)
    single = SingleTimeNet()
    for p in single.parameters():
        nn.init.normal_(p, std=0.3)
    two = TwoTimeNet()
    load_single_time_state_dict(two, single.state_dict())
    x, t = torch.randn(32, 2), torch.rand(32)
    torch.testing.assert_close(two(x, t, t), single(x, t), rtol=0, atol=0)
    assert not torch.allclose(two(x, t, torch.zeros_like(t)), single(x, t))


def test_two_time_checkpoint_loads_as_is():
    a, b = TwoTimeNet(), TwoTimeNet()
    load_single_time_state_dict(b, a.state_dict())
    x, t, r = torch.randn(4, 2), torch.rand(4), torch.rand(4)
    torch.testing.assert_close(a(x, t, r), b(x, t, r))


def test_mismatched_checkpoint_names_the_keys():
    state = SingleTimeNet().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["body.0.bias"]
    with pytest.raises(KeyError, match=r"missing \['body.0.bias'\].*unexpected \['extra.weight'\]"):
        load_single_time_state_dict(TwoTimeNet(), state)
