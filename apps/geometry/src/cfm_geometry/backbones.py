"""Networks ``net(x, t, r, cond) -> tensor shaped like x`` for :class:`cfm_core.FlowMap`.

* :class:`PointMLP` — Geometry Distributions' per-point network: every point is mapped on its own
  (points never interact), so one shape is one network and the batch is a batch of points
  ``(B, C)`` (a batch of sets ``(B, N, C)`` also works, with one time pair per set).
* :class:`PointTransformer` — a set network: the ``N`` points of each of ``B`` sets attend to each
  other. No positional encoding, so it is permutation equivariant over the points.

Both embed each point with Fourier features ``[x, sin(2^k pi x), cos(2^k pi x)]``, ``k = 0..L-1``
per channel (default ``L = 2``; GD: ``L = 8``, whose high frequencies make the cumulative
target's ``d_x m`` term huge on the noisy input; ``L = 0``: raw coordinates), and the two times
with ``cfm_core``'s two-time embedding around a time-feature MLP: random Fourier features
(``time_embedding="fourier"``, suits EDM's network time ``ln(sigma)/4``, as GD's ``MPFourier``)
or sinusoidal ones (``"sinusoidal"``, suits times in ``[0, 1]``), both at the core's default
frequency scale. Modulation gains and output layers start at zero, so a fresh network outputs
zero. ``config()`` returns the constructor arguments with a ``kind``; :func:`backbone_from_config`
rebuilds the network from it. The networks are unconditional: ``cond`` must be ``None``.

Sampling evaluates every point of a batch at the same ``(t, r)``; inside
:meth:`~_PointBackbone.shared_times` the time embedding and the time modulations are computed
once per batch and broadcast, instead of once per point (the same outputs, about half the work of
a small per-point network).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from cfm_core.nn import (
    FourierPointFeatures,
    FourierTimeEmbedding,
    SinusoidalTimeEmbedding,
    TimeMLPEmbedding,
    TwoTimeEmbedding,
)
from torch import Tensor, nn

TimeEmbedding = Literal["fourier", "sinusoidal"]
TIME_FEATURES = {"fourier": FourierTimeEmbedding, "sinusoidal": SinusoidalTimeEmbedding}


class _PointBackbone(nn.Module):
    """What both backbones share: the point embedding, the two-time embedding, and their config
    round trip."""

    kind: str

    def __init__(
        self,
        config: dict[str, Any],
        channels: int,
        width: int,
        fourier_levels: int,
        time_embedding: TimeEmbedding,
    ) -> None:
        super().__init__()
        if channels < 1 or width < 1:
            raise ValueError(f"need channels >= 1 and a positive width, got {channels}, {width}")
        if time_embedding not in TIME_FEATURES:
            raise ValueError(f"unknown time_embedding {time_embedding!r}; choose one of {sorted(TIME_FEATURES)}")
        self._config = dict(config)
        self.channels = int(channels)
        self.point_embedding = FourierPointFeatures(channels, fourier_levels)
        self.input = nn.Linear(self.point_embedding.out_features, width)
        features = TIME_FEATURES[time_embedding](width)
        self.time_embedding = TwoTimeEmbedding(TimeMLPEmbedding(width, features=features, feature_dim=width))
        self._shared_times = False

    @contextlib.contextmanager
    def shared_times(self) -> Iterator[None]:
        """Within this context every call must give all rows the same ``t`` and the same ``r``
        (as sampling does); the time embedding is then computed once per call and broadcast over
        the rows. A call whose rows differ in ``t`` or ``r`` raises a ValueError."""
        previous, self._shared_times = self._shared_times, True
        try:
            yield
        finally:
            self._shared_times = previous

    def config(self) -> dict[str, Any]:
        """The constructor arguments and ``kind``: :func:`backbone_from_config` rebuilds it."""
        return {"kind": self.kind, **self._config}

    def _embed(self, x: Tensor, t: Tensor, r: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """Point tokens ``(..., width)`` and the activated time vector ``(B, width)`` (``(1,
        width)``, broadcast over the rows, inside :meth:`shared_times`)."""
        if cond is not None:
            raise ValueError("this network is unconditional but got a condition")
        batch = x.shape[0]
        for name, time in (("t", t), ("r", r)):
            if time.shape != (batch,):
                raise ValueError(f"{name} must have shape ({batch},), got {tuple(time.shape)}")
        if x.shape[-1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got input {tuple(x.shape)}")
        if self._shared_times:
            if not bool((t == t[0]).all() and (r == r[0]).all()):
                raise ValueError("shared_times: the rows of this batch have different times")
            t, r = t[:1], r[:1]
        emb = self.time_embedding(t, r)
        return self.input(self.point_embedding(x)), F.silu(emb).to(x.dtype)


def _rms_norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


class ModulatedResidualBlock(nn.Module):
    """GD's block: ``y = W1 silu(rmsnorm(h))``, ``y = silu(y (1 + g W_e e))``, ``h + W2 y``, with
    the scalar gain ``g`` starting at 0 (the time embedding ``e`` enters as training moves it)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(width, width)
        self.linear2 = nn.Linear(width, width)
        self.modulation = nn.Linear(width, width)
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        y = self.linear1(F.silu(_rms_norm(h)))
        y = F.silu(y * (1 + self.gain * self.modulation(emb)))
        return h + self.linear2(y)


class PointMLP(_PointBackbone):
    """Geometry Distributions' per-point network (see the module docstring).

    Args:
        channels: point channels (3 for xyz).
        hidden, depth: width and number of :class:`ModulatedResidualBlock` (GD: 512 x 6).
        fourier_levels: frequencies ``2^k pi``, ``k < fourier_levels``, of the point embedding.
        time_embedding: ``"fourier"`` (EDM's ``ln(sigma)/4``) or ``"sinusoidal"`` (times in
            ``[0, 1]``) time features.

    ``forward(x, t, r, cond=None)``: ``x`` is ``(B, C)`` or ``(B, N, C)``; ``t``, ``r`` are
    ``(B,)``; returns a tensor shaped like ``x``.
    """

    kind = "point_mlp"

    def __init__(
        self,
        channels: int = 3,
        hidden: int = 512,
        depth: int = 6,
        fourier_levels: int = 2,
        time_embedding: TimeEmbedding = "fourier",
    ) -> None:
        config = {
            "channels": channels,
            "hidden": hidden,
            "depth": depth,
            "fourier_levels": fourier_levels,
            "time_embedding": time_embedding,
        }
        super().__init__(config, channels, hidden, fourier_levels, time_embedding)
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.blocks = nn.ModuleList(ModulatedResidualBlock(hidden) for _ in range(depth))
        self.output = nn.Linear(hidden, channels)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: Tensor, t: Tensor, r: Tensor, cond: Tensor | None = None) -> Tensor:
        if x.ndim not in (2, 3):
            raise ValueError(f"PointMLP takes (B, C) or (B, N, C) points, got {tuple(x.shape)}")
        h, emb = self._embed(x, t, r, cond)
        if x.ndim == 3:
            emb = emb[:, None]
        for block in self.blocks:
            h = block(h, emb)
        return self.output(_rms_norm(h))


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class AdaLNTransformerBlock(nn.Module):
    """Pre-norm self-attention and MLP, each with shift/scale/gate from the embedding (adaLN-Zero:
    the modulation starts at zero, so the block starts as the identity)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(emb)[:, None].chunk(6, -1)
        h = h + gate1 * self._attention(_modulate(self.norm1(h), shift1, scale1))
        return h + gate2 * self.mlp(_modulate(self.norm2(h), shift2, scale2))

    def _attention(self, x: Tensor) -> Tensor:
        batch, points, width = x.shape
        q, k, v = self.qkv(x).view(batch, points, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, points, width))


class PointTransformer(_PointBackbone):
    """A set transformer over ``(B, N, C)`` points (see the module docstring).

    Args:
        channels: point channels.
        width, depth, heads, mlp_ratio: the :class:`AdaLNTransformerBlock` stack.
        fourier_levels, time_embedding: as for :class:`PointMLP`.
    """

    kind = "point_transformer"

    def __init__(
        self,
        channels: int = 3,
        width: int = 256,
        depth: int = 6,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        fourier_levels: int = 2,
        time_embedding: TimeEmbedding = "fourier",
    ) -> None:
        config = {
            "channels": channels,
            "width": width,
            "depth": depth,
            "heads": heads,
            "mlp_ratio": mlp_ratio,
            "fourier_levels": fourier_levels,
            "time_embedding": time_embedding,
        }
        super().__init__(config, channels, width, fourier_levels, time_embedding)
        if depth < 1 or heads < 1 or width % heads:
            raise ValueError(
                f"need depth >= 1 and width divisible by heads, got depth {depth}, width {width}, heads {heads}"
            )
        self.blocks = nn.ModuleList(AdaLNTransformerBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(width, 2 * width)
        self.output = nn.Linear(width, channels)
        for layer in (self.final_modulation, self.output):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, t: Tensor, r: Tensor, cond: Tensor | None = None) -> Tensor:
        if x.ndim != 3:
            raise ValueError(f"PointTransformer takes (B, N, C) point sets, got {tuple(x.shape)}")
        h, emb = self._embed(x, t, r, cond)
        for block in self.blocks:
            h = block(h, emb)
        shift, scale = self.final_modulation(emb)[:, None].chunk(2, -1)
        return self.output(_modulate(self.final_norm(h), shift, scale))


BACKBONES: dict[str, type[_PointBackbone]] = {
    PointMLP.kind: PointMLP,
    PointTransformer.kind: PointTransformer,
}


def backbone_from_config(config: dict[str, Any]) -> PointMLP | PointTransformer:
    """Rebuild a backbone from its :meth:`config` dict (the ``kind`` key picks the class)."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in BACKBONES:
        raise ValueError(f"unknown backbone kind {kind!r}; choose one of {sorted(BACKBONES)}")
    return _construct(BACKBONES[kind], config)


def point_mlp_from_config(config: dict[str, Any]) -> PointMLP:
    """A :class:`PointMLP` from its config (``kind``, if present, must be ``point_mlp``)."""
    return _construct_kind(PointMLP, config)


def point_transformer_from_config(config: dict[str, Any]) -> PointTransformer:
    """A :class:`PointTransformer` from its config (``kind``, if present, must match)."""
    return _construct_kind(PointTransformer, config)


def _construct_kind(cls: type[_PointBackbone], config: dict[str, Any]):
    config = dict(config)
    kind = config.pop("kind", cls.kind)
    if kind != cls.kind:
        raise ValueError(f"config is for a {kind!r} backbone, not {cls.kind!r}")
    return _construct(cls, config)


def _construct(cls: type[_PointBackbone], config: dict[str, Any]):
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f"unknown {cls.kind} config keys {unknown}; allowed: {sorted(allowed)}")
    return cls(**config)
