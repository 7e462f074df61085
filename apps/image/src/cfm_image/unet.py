"""A two-time UNet ``net(x, t, r, cond)`` for images (DDPM++/ADM style).

Residual blocks (GroupNorm, SiLU, 3x3 convolutions, scale/shift from the embedding, dropout),
self-attention at chosen feature resolutions and in the middle, skip connections between the
down and up paths, and a zero-initialised output convolution. The two times enter through
:class:`cfm_core.nn.TwoTimeEmbedding`, so ``net(x, t, t)`` of a fresh network equals what the
same network with a single time would compute, and a single-time checkpoint is a warm start
(:func:`cfm_core.nn.load_single_time_state_dict`).

Class conditioning adds a learned class embedding; the extra index ``num_classes`` is the "null"
class of classifier-free guidance: ``FlowMap(net, null_cond=torch.tensor(num_classes))`` trained
with ``LossRecipe(cond_dropout=0.1)``. Attention uses :func:`torch.nn.functional.scaled_dot_product_attention`: the
fast kernels in ordinary passes, the math kernel inside the JVP: the core forces it there
(:func:`cfm_core.derivatives.derivative_context`); a direct ``torch.func.jvp`` caller must do the
same, since the fused kernels have no forward-mode rule.

The architecture is a JSON-able dict (:func:`unet_config`, :attr:`UNet.config`) that rebuilds
the network with :func:`unet_from_config`; :data:`UNET_PRESETS` are named starting points.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from cfm_core.nn import (
    FourierTimeEmbedding,
    SinusoidalTimeEmbedding,
    TimeMLPEmbedding,
    TwoTimeEmbedding,
)
from torch import Tensor, nn

TIME_EMBEDDINGS = ("sinusoidal", "fourier")
SKIP_SCALE = 1.0 / math.sqrt(2.0)  # residual sums are rescaled to keep the variance (DDPM++)

UNET_PRESETS: dict[str, dict[str, Any]] = {
    # ~0.2M parameters, attention only in the middle: the CPU quick preset (16x16 digits).
    "micro": dict(
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        num_heads=2,
        dropout=0.0,
    ),
    # ~0.8M parameters: CPU tests and the built-in datasets.
    "tiny": dict(
        base_channels=32,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(16,),
        num_heads=2,
        dropout=0.0,
    ),
    # ~7M parameters: small datasets at 32x32 on one GPU.
    "small": dict(
        base_channels=64,
        channel_mults=(1, 2, 2),
        num_res_blocks=2,
        attention_resolutions=(16,),
        num_heads=4,
        dropout=0.1,
    ),
    # DDPM's CIFAR-10 UNet with the two-time embedding: ~39M parameters.
    "cifar": dict(
        base_channels=128,
        channel_mults=(1, 2, 2, 2),
        num_res_blocks=2,
        attention_resolutions=(16,),
        num_heads=4,
        dropout=0.1,
    ),
}


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels where the width allows."""
    return nn.GroupNorm(math.gcd(min(32, max(channels // 4, 1)), channels), channels)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


def _zero(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, embedding scale/shift, GroupNorm-SiLU-dropout-conv (zero-initialised),
    plus a (1x1-projected) skip."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.emb = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(_conv3x3(out_channels, out_channels))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(self.dropout(h))
        return (self.skip(x) + h) * SKIP_SCALE


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels, with a zero-initialised output projection."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention width {channels} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = _group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        head_dim, tokens = channels // self.num_heads, height * width
        qkv = self.qkv(self.norm(x)).reshape(batch, 3 * self.num_heads, head_dim, tokens)
        # (B, 3 heads, HW, head_dim) with the head dim contiguous, as the fused kernels want
        q, k, v = qkv.transpose(-1, -2).contiguous().chunk(3, dim=1)
        h = F.scaled_dot_product_attention(q, k, v)
        h = h.transpose(-1, -2).reshape(batch, channels, height, width)
        return (x + self.proj(h)) * SKIP_SCALE


class Stage(nn.Module):
    """A residual block, followed by attention when its resolution asks for it."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        dropout: float,
        attention_heads: int | None,
    ) -> None:
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_dim, dropout)
        self.attn = None if attention_heads is None else AttentionBlock(out_channels, attention_heads)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.res(x, emb)
        return x if self.attn is None else self.attn(x)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3x3(channels, channels, stride=2)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3x3(channels, channels)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Two-time image UNet: ``forward(x, t, r, cond=None) -> (B, out_channels, H, W)``.

    Args:
        in_channels: image channels (1 grey, 3 RGB).
        resolution: input side; must be divisible by ``2 ** (len(channel_mults) - 1)``.
        out_channels: output channels (default ``in_channels``).
        base_channels: width of the first level; the time embedding is 4x this.
        channel_mults: width multiplier per level; each level after the first halves the resolution.
        num_res_blocks: residual blocks per level (the up path has one more, for the skips).
        attention_resolutions: feature resolutions (sides) with self-attention after each block;
            the middle always has attention.
        num_heads: attention heads (must divide the width where attention is used).
        dropout: dropout rate inside the residual blocks.
        num_classes: number of classes for class conditioning (``None``: unconditional). Labels
            ``0..num_classes-1`` are classes; label ``num_classes`` is the null class.
        time_embedding: ``"sinusoidal"`` (times in ``[0, 1]``: u, x1, ddim) or ``"fourier"``
            (EDM's ``ln(sigma) / 4``).
    """

    def __init__(
        self,
        in_channels: int,
        resolution: int,
        out_channels: int | None = None,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        num_heads: int = 4,
        dropout: float = 0.1,
        num_classes: int | None = None,
        time_embedding: str = "sinusoidal",
    ) -> None:
        super().__init__()
        self.config = unet_config(
            in_channels=in_channels,
            resolution=resolution,
            out_channels=out_channels,
            base_channels=base_channels,
            channel_mults=channel_mults,
            num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions,
            num_heads=num_heads,
            dropout=dropout,
            num_classes=num_classes,
            time_embedding=time_embedding,
        )
        _check_architecture(self.config)
        levels = len(channel_mults)
        self.in_channels, self.resolution, self.num_classes = in_channels, resolution, num_classes
        out_channels = out_channels or in_channels
        emb_dim = 4 * base_channels
        features = (
            SinusoidalTimeEmbedding(base_channels)
            if time_embedding == "sinusoidal"
            else FourierTimeEmbedding(base_channels)
        )
        self.time_embedding = TwoTimeEmbedding(TimeMLPEmbedding(emb_dim, features=features, feature_dim=base_channels))
        self.class_embedding = None if num_classes is None else nn.Embedding(num_classes + 1, emb_dim)

        def heads_at(side: int) -> int | None:
            return num_heads if side in attention_resolutions else None

        self.input_conv = _conv3x3(in_channels, base_channels)
        self.down = nn.ModuleList()
        skip_channels, channels, side = [base_channels], base_channels, resolution
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(Stage(channels, base_channels * mult, emb_dim, dropout, heads_at(side)))
                channels = base_channels * mult
                skip_channels.append(channels)
            if level < levels - 1:
                self.down.append(Downsample(channels))
                skip_channels.append(channels)
                side //= 2
        self.middle = nn.ModuleList(
            [
                Stage(channels, channels, emb_dim, dropout, num_heads),
                Stage(channels, channels, emb_dim, dropout, None),
            ]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(
                    Stage(
                        channels + skip_channels.pop(),
                        base_channels * mult,
                        emb_dim,
                        dropout,
                        heads_at(side),
                    )
                )
                channels = base_channels * mult
            if level > 0:
                self.up.append(Upsample(channels))
                side *= 2
        self.output_norm = _group_norm(channels)
        self.output_conv = _zero(_conv3x3(channels, out_channels))

    def forward(self, x: Tensor, t: Tensor, r: Tensor, cond: Tensor | None = None) -> Tensor:
        """``x`` ``(B, C, H, W)``, times ``t``, ``r`` ``(B,)``, ``cond`` ``(B,)`` integer labels
        (``num_classes`` = null class; ``None`` means all null) -> ``(B, out_channels, H, W)``."""
        self._check_inputs(x, t, r, cond)
        emb = self.time_embedding(t, r)
        if self.class_embedding is not None:
            if cond is None:
                cond = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.class_embedding(cond.long())
        emb = F.silu(emb)
        h = self.input_conv(x)
        skips = [h]
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        for block in self.middle:
            h = block(h, emb)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], dim=1), emb) if isinstance(block, Stage) else block(h, emb)
        return self.output_conv(F.silu(self.output_norm(h)))

    def _check_inputs(self, x: Tensor, t: Tensor, r: Tensor, cond: Tensor | None) -> None:
        expected = (self.in_channels, self.resolution, self.resolution)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"UNet expects images (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        for name, time in (("t", t), ("r", r)):
            if time.shape != (x.shape[0],):
                raise ValueError(f"{name} must have shape ({x.shape[0]},), got {tuple(time.shape)}")
        if cond is None:
            return
        if self.class_embedding is None:
            raise ValueError("this UNet is unconditional (num_classes=None) but got class labels")
        if cond.shape != (x.shape[0],) or cond.dtype.is_floating_point:
            raise ValueError(
                f"cond must be integer class labels of shape ({x.shape[0]},), got {cond.dtype} {tuple(cond.shape)}"
            )


def _check_architecture(config: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first inconsistent entry of a UNet config."""
    for name in ("in_channels", "resolution", "base_channels", "num_res_blocks", "num_heads"):
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name in ("out_channels", "num_classes"):
        if config[name] is not None and config[name] < 1:
            raise ValueError(f"{name} must be positive or None, got {config[name]}")
    if config["base_channels"] % 2:
        raise ValueError(f"base_channels must be even (the time-feature width), got {config['base_channels']}")
    mults, resolution = config["channel_mults"], config["resolution"]
    if not mults or any(m < 1 for m in mults):
        raise ValueError(f"channel_mults must be a non-empty list of positive ints, got {mults}")
    factor = 2 ** (len(mults) - 1)
    if resolution % factor:
        raise ValueError(f"resolution {resolution} is not divisible by {factor}, which {len(mults)} levels need")
    sides = [resolution // 2**k for k in range(len(mults))]
    unknown = sorted(set(config["attention_resolutions"]) - set(sides))
    if unknown:
        raise ValueError(f"attention_resolutions {unknown} match no feature resolution; this UNet has {sides}")
    if not 0.0 <= config["dropout"] < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {config['dropout']}")
    if config["time_embedding"] not in TIME_EMBEDDINGS:
        raise ValueError(f"unknown time_embedding {config['time_embedding']!r}; choose one of {TIME_EMBEDDINGS}")


_PARAMETERS = {name: p for name, p in inspect.signature(UNet.__init__).parameters.items() if name != "self"}
_REQUIRED = tuple(name for name, p in _PARAMETERS.items() if p.default is inspect.Parameter.empty)


def unet_config(preset: str | None = None, **options: Any) -> dict[str, Any]:
    """The full, JSON-able architecture of a UNet: defaults, then ``preset``, then ``options``.

    ``options`` must include ``in_channels`` and ``resolution``; sequences become lists.
    """
    if preset is not None and preset not in UNET_PRESETS:
        raise ValueError(f"unknown UNet preset {preset!r}; choose one of {sorted(UNET_PRESETS)}")
    unknown = sorted(set(options) - set(_PARAMETERS))
    if unknown:
        raise ValueError(f"unknown UNet options {unknown}; known: {sorted(_PARAMETERS)}")
    config = {name: p.default for name, p in _PARAMETERS.items() if name not in _REQUIRED}
    config.update(UNET_PRESETS.get(preset, {}))
    config.update(options)
    missing = [name for name in _REQUIRED if name not in config]
    if missing:
        raise ValueError(f"UNet config lacks {missing}")
    return {name: list(v) if isinstance(v, (tuple, list)) else v for name, v in config.items()}


def unet_from_config(config: Mapping[str, Any]) -> UNet:
    """Rebuild a :class:`UNet` from :func:`unet_config` output (e.g. read back from JSON)."""
    full = unet_config(**config)
    return UNet(**{name: tuple(v) if isinstance(v, list) else v for name, v in full.items()})
