"""Single-time embeddings (a scalar time per sample -> a feature vector)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal features ``[cos(s t w_k), sin(s t w_k)]`` with geometric ``w_k``.

    ``scale`` multiplies the time first, so the highest frequency is ``scale`` radians per unit
    time. CFM differentiates the network in ``t``, so the default is low (10, for times in
    ``[0, 1]``): high frequencies make the exact time derivative in the field-equation target
    (``derivative="jvp"``), and with it the target, huge; the default finite-difference derivative
    stays bounded (docs/design-notes.md, "Low-frequency time features").
    """

    def __init__(self, dim: int, scale: float = 10.0, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.scale = float(scale)

    def forward(self, t: Tensor) -> Tensor:
        args = (t.float() * self.scale)[:, None] * self.freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class FourierTimeEmbedding(nn.Module):
    """Random Fourier features ``[cos(2 pi w t), sin(2 pi w t)]`` with fixed ``w ~ N(0, scale^2)``
    (NCSN++/EDM style). The default ``scale = 1`` (as Geometry Distributions) keeps the network smooth
    in ``t``, which the field-equation target differentiates; NCSN++'s 16 makes the exact time
    derivative (``derivative="jvp"``), and with it the target, huge; the default finite-difference
    derivative stays bounded (docs/design-notes.md, "Low-frequency time features")."""

    def __init__(self, dim: int, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, t: Tensor) -> Tensor:
        args = 2 * math.pi * t.float()[:, None] * self.freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeMLPEmbedding(nn.Module):
    """A feature map (sinusoidal or Fourier) followed by a two-layer SiLU MLP: the usual time embedding."""

    def __init__(self, dim: int, features: nn.Module | None = None, feature_dim: int | None = None) -> None:
        super().__init__()
        feature_dim = feature_dim or dim
        self.features = features if features is not None else SinusoidalTimeEmbedding(feature_dim)
        self.mlp = nn.Sequential(nn.Linear(feature_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(self.features(t))


class FourierPointFeatures(nn.Module):
    """Coordinates and their dyadic sin/cos features, ``[x, sin(2^k pi x), cos(2^k pi x)]`` for
    ``k < levels``, on every channel of the last axis (ordered channel-major: all levels of channel
    0, then channel 1, ...). ``levels = 0`` returns ``x`` unchanged.

    The point embedding of Geometry Distributions and of Functional Diffusion's decoders: it lets an
    MLP on raw coordinates represent the sharp maps that few-step generation needs (a one-step map
    from Gaussian noise to a checkerboard is far less smooth than the velocity field at any time).

    Args:
        channels: size of the last axis of ``x``.
        levels: number of octaves.
    """

    def __init__(self, channels: int, levels: int) -> None:
        super().__init__()
        if channels < 1 or levels < 0:
            raise ValueError(f"need channels >= 1 and levels >= 0, got {channels}, {levels}")
        self.channels, self.levels = int(channels), int(levels)
        self.out_features = channels * (1 + 2 * levels)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.channels:
            raise ValueError(f"expected {self.channels} channels on the last axis, got {tuple(x.shape)}")
        if self.levels == 0:
            return x
        octaves = 2.0 ** torch.arange(self.levels, device=x.device, dtype=x.dtype)
        angles = (x[..., None] * (math.pi * octaves)).flatten(-2)
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


#: The time features :func:`time_features` builds.
TIME_FEATURES = ("sinusoidal", "fourier")


def time_features_for(formulation: str, choice: str = "auto") -> str:
    """The time features of a network for ``formulation``: ``choice`` itself, or for ``"auto"``
    the rule every app follows: ``"fourier"`` for EDM (its network time ``ln(sigma) / 4`` is
    unbounded) and ``"sinusoidal"`` for the formulations whose times lie in ``[0, 1]``."""
    if choice == "auto":
        return "fourier" if formulation == "edm" else "sinusoidal"
    if choice not in TIME_FEATURES:
        raise ValueError(f"unknown time features {choice!r}; choose auto or one of {TIME_FEATURES}")
    return choice


def time_features(kind: str, dim: int) -> nn.Module:
    """A :class:`SinusoidalTimeEmbedding` or :class:`FourierTimeEmbedding` of ``dim`` features,
    with the defaults above (``kind`` one of :data:`TIME_FEATURES`)."""
    if kind == "sinusoidal":
        return SinusoidalTimeEmbedding(dim)
    if kind == "fourier":
        return FourierTimeEmbedding(dim)
    raise ValueError(f"unknown time_embedding {kind!r}; choose one of {TIME_FEATURES}")
