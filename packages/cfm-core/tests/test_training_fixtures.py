"""Shared pieces of the trainer tests: a tiny two-time MLP, 2-D Gaussian data, a config factory.

Also imported by the DDP worker processes (run as a script), so it imports nothing relative.
"""

from __future__ import annotations

import torch
from cfm_core import CFMLoss, FlowMap, LossRecipe
from cfm_core.nn import SinusoidalTimeEmbedding, TimeMLPEmbedding, TwoTimeEmbedding
from cfm_core.training import TrainConfig
from torch import nn

DIM = 2
BATCH = 32


class TinyNet(nn.Module):
    """``net(x, t, r, cond)``: an MLP on ``[x, emb(t, r)]``; ``two_time=False`` ignores ``r``
    (a single-time, multi-step network whose checkpoint warm-starts the two-time one)."""

    def __init__(self, two_time: bool = True, hidden: int = 32, emb_dim: int = 8) -> None:
        super().__init__()
        embedding = TimeMLPEmbedding(emb_dim, features=SinusoidalTimeEmbedding(emb_dim))
        self.two_time = two_time
        self.time = TwoTimeEmbedding(embedding) if two_time else embedding
        self.body = nn.Sequential(nn.Linear(DIM + emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, DIM))

    def forward(self, x, t, r, cond=None):
        emb = self.time(t, r) if self.two_time else self.time(t)
        out = self.body(torch.cat([x, emb.to(x.dtype)], dim=1))
        return out if cond is None else out + cond


def make_loss(seed: int = 0, ratio: float = 0.5, two_time: bool = True, **recipe) -> CFMLoss:
    """A u-formulation :class:`CFMLoss` of a fresh :class:`TinyNet` (its ``.model``)."""
    torch.manual_seed(seed)
    model = FlowMap(TinyNet(two_time), formulation="u")
    return CFMLoss(model, LossRecipe(instantaneous_ratio=ratio, derivative="jvp", **recipe))


def gaussian_data(step: int) -> torch.Tensor:
    """The global batch of ``step``: 2-D Gaussian data (the trainer seeds the draw)."""
    return torch.randn(BATCH, DIM) * torch.tensor([0.5, 2.0]) + torch.tensor([1.0, -1.0])


def train_config(output_dir, **overrides) -> TrainConfig:
    options = dict(
        steps=6,
        batch_size=BATCH,
        lr=1e-2,
        log_every=1,
        checkpoint_every=0,
        ema_decays=(0.9, 0.5),
        output_dir=str(output_dir),
        cpu=True,
    )
    options.update(overrides)
    return TrainConfig(**options)
