"""The pose backbone: a time-modulated residual MLP conditioned on a point-cloud encoding.

``PoseMLP(x, t, r, cond)`` follows the ``net(x, t, r, cond)`` contract of
:class:`cfm_core.FlowMap`; ``cond`` is the input shape's surface points ``(B, M, 3)``.

* ``mode="vector"`` (fixed topology): ``x (B, data_dim)``, e.g. ``data_dim = 3 J``; the MLP reads
  ``[x, code]`` where ``code`` is the :class:`PointSetEncoder` encoding of ``cond``.
* ``mode="per_point"`` (PDT-style variable topology): ``x (B, N, 3)`` paired row by row with
  ``cond (B, N, 3)``; the same MLP runs on every point, reading ``[x_i, F(p_i), code]`` where
  ``F`` adds sin/cos features ``(sin 2^k pi v, cos 2^k pi v)`` for ``k < fourier_levels``. The
  noisy state ``x_i`` enters raw: CFM's training target contains the network's derivative along
  the trajectory, and sin/cos features of ``x`` would multiply it by up to ``2^k pi``.

The two times enter through ``TwoTimeEmbedding(TimeMLPEmbedding(...))`` (sinusoidal features for
times in ``[0, 1]``, random Fourier features for EDM's ``ln(sigma)/4``); the embedding, plus a
projection of the shape code, scales and shifts the normalised activations of every residual block.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from cfm_core.nn import (
    FourierPointFeatures,
    FourierTimeEmbedding,
    SinusoidalTimeEmbedding,
    TimeMLPEmbedding,
    TwoTimeEmbedding,
)
from torch import Tensor, nn

MODES = ("vector", "per_point")
TIME_FEATURES = ("sinusoidal", "fourier")


class PointSetEncoder(nn.Module):
    """PointNet-style encoder: a shared per-point MLP, then max and mean pooling, then a linear map.

    ``(B, M, 3) -> (B, code_dim)``; invariant to the order of the points.
    """

    def __init__(self, code_dim: int = 256, hidden: int = 128, depth: int = 3, fourier_levels: int = 6) -> None:
        super().__init__()
        self.point_features = FourierPointFeatures(3, fourier_levels)
        layers: list[nn.Module] = [nn.Linear(self.point_features.out_features, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        self.point_mlp = nn.Sequential(*layers)
        self.head = nn.Linear(2 * hidden, code_dim)

    def forward(self, points: Tensor) -> Tensor:
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must have shape (B, M, 3), got {tuple(points.shape)}")
        features = self.point_mlp(self.point_features(points))
        pooled = torch.cat([features.amax(dim=1), features.mean(dim=1)], dim=-1)
        return self.head(pooled)


class ModulatedResidualBlock(nn.Module):
    """``h + W2 silu(W1 (LN(h) (1 + scale(c)) + shift(c)))``; ``c`` broadcasts over middle axes."""

    def __init__(self, hidden: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.modulation = nn.Linear(cond_dim, 2 * hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        scale, shift = self.modulation(c).chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


@dataclass(frozen=True)
class PoseMLPConfig:
    """Everything needed to rebuild a :class:`PoseMLP` (stored in checkpoints)."""

    data_dim: int = 72
    mode: str = "vector"
    hidden: int = 256
    depth: int = 4
    time_dim: int = 128
    time_features: str = "sinusoidal"
    code_dim: int = 256
    encoder_hidden: int = 128
    encoder_depth: int = 3
    fourier_levels: int = 6

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown PoseMLP mode {self.mode!r}; choose from {MODES}")
        if self.time_features not in TIME_FEATURES:
            raise ValueError(f"unknown time features {self.time_features!r}; choose from {TIME_FEATURES}")
        if self.mode == "per_point" and self.data_dim != 3:
            raise ValueError(f"per_point mode generates 3-D points; data_dim must be 3, got {self.data_dim}")
        sizes = (
            self.data_dim,
            self.hidden,
            self.depth,
            self.time_dim,
            self.code_dim,
            self.encoder_hidden,
            self.encoder_depth,
        )
        if min(sizes) < 1 or self.fourier_levels < 0 or self.time_dim % 2:
            raise ValueError(f"invalid PoseMLP sizes in {self}")


class PoseMLP(nn.Module):
    """The pose backbone (module doc); keywords are the fields of :class:`PoseMLPConfig`."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.cfg = PoseMLPConfig(**options)
        cfg = self.cfg
        features = (
            SinusoidalTimeEmbedding(cfg.time_dim)
            if cfg.time_features == "sinusoidal"
            else FourierTimeEmbedding(cfg.time_dim)
        )
        self.time_embedding = TwoTimeEmbedding(TimeMLPEmbedding(cfg.time_dim, features=features))
        self.encoder = PointSetEncoder(cfg.code_dim, cfg.encoder_hidden, cfg.encoder_depth, cfg.fourier_levels)
        self.point_features = FourierPointFeatures(3, cfg.fourier_levels)
        in_dim = cfg.data_dim if cfg.mode == "vector" else 3 + self.point_features.out_features
        self.input = nn.Linear(in_dim + cfg.code_dim, cfg.hidden)
        self.code_to_cond = nn.Linear(cfg.code_dim, cfg.time_dim)
        self.blocks = nn.ModuleList(ModulatedResidualBlock(cfg.hidden, cfg.time_dim) for _ in range(cfg.depth))
        self.output = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.Linear(cfg.hidden, cfg.data_dim))

    def config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cfg)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PoseMLP:
        unknown = set(config) - {f.name for f in dataclasses.fields(PoseMLPConfig)}
        if unknown:
            raise ValueError(f"unknown PoseMLP config keys {sorted(unknown)}")
        return cls(**config)

    def _check(self, x: Tensor, cond: Tensor | None) -> None:
        if cond is None or cond.ndim != 3 or cond.shape[-1] != 3:
            shape = None if cond is None else tuple(cond.shape)
            raise ValueError(f"cond must be the input points (B, M, 3), got {shape}")
        if self.cfg.mode == "vector" and (x.ndim != 2 or x.shape[1] != self.cfg.data_dim):
            raise ValueError(f"x must have shape (B, {self.cfg.data_dim}), got {tuple(x.shape)}")
        if self.cfg.mode == "per_point" and x.shape != cond.shape:
            raise ValueError(f"per_point x {tuple(x.shape)} must match its paired points {tuple(cond.shape)}")

    def forward(self, x: Tensor, t: Tensor, r: Tensor, cond: Tensor | None = None) -> Tensor:
        self._check(x, cond)
        code = self.encoder(cond.to(x.dtype))
        c = self.time_embedding(t, r).to(x.dtype) + self.code_to_cond(code)
        if self.cfg.mode == "vector":
            h = self.input(torch.cat([x, code], dim=-1))
        else:
            per_point = torch.cat(
                [x, self.point_features(cond.to(x.dtype)), code[:, None].expand(-1, x.shape[1], -1)], dim=-1
            )
            h = self.input(per_point)
            c = c[:, None]
        for block in self.blocks:
            h = block(h, c)
        return self.output(h)
