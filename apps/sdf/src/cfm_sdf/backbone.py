"""``SDFDecoder``: a small Functional-Diffusion denoiser over SDF values, with two times.

Design (after Functional Diffusion, Zhang & Wonka 2024, scaled down; see the README of the app):

* **Context tokens** ``PointEmbed(xyz) + Linear(value)`` for the ``Nc`` context points and their
  (noisy) values. ``PointEmbed`` concatenates ``xyz`` with ``sin``/``cos`` of ``2^k pi xyz``
  (``k < point_frequencies``) and projects linearly.
* **Condition tokens**: the surface points (64, or any number) through a second ``PointEmbed``,
  plus one learned **null token** that is always present. An unconditional row attends to the null
  token only; ``cond`` without ``"surface_points"`` is unconditional, and a row of
  ``surface_points`` that is entirely NaN is unconditional too (the sentinel for classifier-free
  guidance dropout and mixed batches; see :data:`NULL_SURFACE_VALUE`).
* **Latents**: ``num_latents`` learned tokens. The context is split into ``stages`` chunks (as FD
  splits its 49k points); stage ``i`` cross-attends from the latents to chunk ``i`` together with
  the condition tokens, then runs ``blocks_per_stage`` self-attention blocks.
* Every block (cross or self) is pre-norm with **adaLN modulation** (shift, scale and a zero-
  initialised gate per branch, as DiT) by the two-time embedding
  ``TwoTimeEmbedding(TimeMLPEmbedding(...))``: FD's modulated LayerNorms, with CFM's second time.
* **Query head**: ``PointEmbed(query)`` (shared with the context tokens) cross-attends to the final
  latents, then a modulated LayerNorm and a zero-initialised ``Linear`` give one value per query.
  Queries do not interact, so any number of them, anywhere, can be evaluated.

``forward(x, t, r, cond)`` returns the head's values **at the context points** (shaped like
``x``), so the decoder is a :class:`~cfm_core.FlowMap` network whose state is the context
values; the same head evaluates the field at arbitrary points with :meth:`SDFDecoder.decode`
(meshing). Attention is ``F.scaled_dot_product_attention``; everything works under
``torch.func.jvp``.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

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

#: Fill a row of ``cond["surface_points"]`` with this value to make that row unconditional.
NULL_SURFACE_VALUE = float("nan")
#: ``"fourier"``: random Fourier features (FD's choice; for EDM's ``ln(sigma)/4``);
#: ``"sinusoidal"``: transformer features (for times in ``[0, 1]``: u, x1, ddim). Both use the
#: core's default frequency scales (tuned for CFM's derivative in ``t``).
TIME_FEATURES = ("fourier", "sinusoidal")

PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests: a few thousand parameters
    "tiny": dict(
        width=32,
        heads=2,
        num_latents=16,
        stages=1,
        blocks_per_stage=1,
        point_frequencies=4,
        mlp_ratio=2,
        time_feature_dim=32,
    ),
    # quick CPU runs (the quick presets of `cfm sdf train`): about 0.3 M parameters
    "small": dict(
        width=64,
        heads=4,
        num_latents=32,
        stages=2,
        blocks_per_stage=1,
        point_frequencies=6,
        mlp_ratio=2,
        time_feature_dim=64,
    ),
    # FD's layout at about a tenth of its width and depth (FD: width 768, 24 stages, 512 latents)
    "base": dict(
        width=384,
        heads=6,
        num_latents=256,
        stages=4,
        blocks_per_stage=2,
        point_frequencies=8,
        mlp_ratio=4,
        time_feature_dim=256,
    ),
}


class DecoderState(NamedTuple):
    """What :meth:`SDFDecoder.encode` returns and :meth:`SDFDecoder.query` reads."""

    latents: Tensor  # (B, num_latents, width)
    time_embedding: Tensor  # (B, width)


class PointEmbed(nn.Module):
    """``xyz -> Linear([xyz, sin(2^k pi xyz), cos(2^k pi xyz)])`` for ``k < frequencies``."""

    def __init__(self, dim: int, frequencies: int) -> None:
        super().__init__()
        self.features = FourierPointFeatures(3, frequencies)
        self.proj = nn.Linear(self.features.out_features, dim)

    def forward(self, points: Tensor) -> Tensor:
        return self.proj(self.features(points))


class Attention(nn.Module):
    """Multi-head attention from ``x`` to ``context`` with an optional key mask ``(B, Lk)``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, key_mask: Tensor | None = None) -> Tensor:
        b, lq, d = x.shape
        lk = context.shape[1]
        q = self.query(x).view(b, lq, self.heads, -1).transpose(1, 2)
        k, v = self.key_value(context).view(b, lk, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(out.transpose(1, 2).reshape(b, lq, d))


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1.0 + scale[:, None]) + shift[:, None]


class ModulatedBlock(nn.Module):
    """adaLN block: attention (self, or cross to ``context``) and an MLP, each gated residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, cross: bool) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(dim, elementwise_affine=False)
        self.norm_context = nn.LayerNorm(dim) if cross else None
        self.attention = Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None = None, key_mask: Tensor | None = None) -> Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(emb).chunk(6, dim=-1)
        h = _modulate(self.norm_attention(x), shift_a, scale_a)
        keys = h if self.norm_context is None else self.norm_context(context)
        x = x + gate_a[:, None] * self.attention(h, keys, key_mask)
        h = _modulate(self.norm_mlp(x), shift_m, scale_m)
        return x + gate_m[:, None] * self.mlp(h)


class Stage(nn.Module):
    """A cross-attention block (latents -> context chunk + condition), then self-attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, blocks: int) -> None:
        super().__init__()
        self.cross = ModulatedBlock(dim, heads, mlp_ratio, cross=True)
        self.blocks = nn.ModuleList(ModulatedBlock(dim, heads, mlp_ratio, cross=False) for _ in range(blocks))

    def forward(self, latents: Tensor, emb: Tensor, context: Tensor, key_mask: Tensor | None) -> Tensor:
        latents = self.cross(latents, emb, context, key_mask)
        for block in self.blocks:
            latents = block(latents, emb)
        return latents


class QueryHead(nn.Module):
    """Queries cross-attend to the latents; a modulated LayerNorm and a Linear give one value."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.attention = Attention(dim, heads)
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, 1)
        for layer in (self.modulation[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, queries: Tensor, latents: Tensor, emb: Tensor) -> Tensor:
        h = queries + self.attention(self.norm_query(queries), self.norm_latents(latents))
        shift, scale = self.modulation(emb).chunk(2, dim=-1)
        return self.out(_modulate(self.norm_out(h), shift, scale)).squeeze(-1)


class SDFDecoder(nn.Module):
    """Functional-Diffusion-style SDF denoiser ``net(x, t, r, cond) -> (B, Nc)`` (see module doc).

    Args:
        width: token width. heads: attention heads (``width % heads == 0``).
        num_latents: learned latent tokens. stages: context chunks, one cross-attention each.
        blocks_per_stage: self-attention blocks after each cross-attention.
        point_frequencies: octaves of the point embedding. mlp_ratio: MLP hidden width / width.
        time_features: ``"fourier"`` or ``"sinusoidal"`` (:data:`TIME_FEATURES`).
        time_feature_dim: size of the time features before the time MLP.
    """

    def __init__(
        self,
        width: int = 256,
        heads: int = 4,
        num_latents: int = 128,
        stages: int = 2,
        blocks_per_stage: int = 2,
        point_frequencies: int = 8,
        mlp_ratio: int = 4,
        time_features: str = "fourier",
        time_feature_dim: int = 256,
    ) -> None:
        super().__init__()
        for name, value in (
            ("width", width),
            ("heads", heads),
            ("num_latents", num_latents),
            ("stages", stages),
            ("point_frequencies", point_frequencies),
            ("mlp_ratio", mlp_ratio),
            ("time_feature_dim", time_feature_dim),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"SDFDecoder: {name} must be a positive integer, got {value!r}")
        if int(blocks_per_stage) != blocks_per_stage or blocks_per_stage < 0:
            raise ValueError(f"SDFDecoder: blocks_per_stage must be >= 0, got {blocks_per_stage!r}")
        if width % heads:
            raise ValueError(f"SDFDecoder: width {width} is not divisible by heads {heads}")
        if time_features not in TIME_FEATURES:
            raise ValueError(f"SDFDecoder: time_features must be one of {TIME_FEATURES}, got {time_features!r}")
        if time_feature_dim % 2:
            raise ValueError(f"SDFDecoder: time_feature_dim must be even, got {time_feature_dim}")
        self._config = dict(
            width=width,
            heads=heads,
            num_latents=num_latents,
            stages=stages,
            blocks_per_stage=blocks_per_stage,
            point_frequencies=point_frequencies,
            mlp_ratio=mlp_ratio,
            time_features=time_features,
            time_feature_dim=time_feature_dim,
        )
        features = (
            FourierTimeEmbedding(time_feature_dim)
            if time_features == "fourier"
            else SinusoidalTimeEmbedding(time_feature_dim)
        )
        self.time_embedding = TwoTimeEmbedding(TimeMLPEmbedding(width, features=features, feature_dim=time_feature_dim))
        self.point_embed = PointEmbed(width, point_frequencies)
        self.value_embed = nn.Linear(1, width)
        self.condition_embed = PointEmbed(width, point_frequencies)
        self.null_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.latents = nn.Parameter(torch.randn(1, num_latents, width) * 0.02)
        self.stages = nn.ModuleList(Stage(width, heads, mlp_ratio, blocks_per_stage) for _ in range(stages))
        self.head = QueryHead(width, heads)

    # ------------------------------------------------------------------ config --
    def config(self) -> dict[str, Any]:
        """The constructor arguments (:meth:`from_config` rebuilds the network)."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SDFDecoder:
        """Build from :meth:`config` output; unknown keys raise ``ValueError`` naming them."""
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"SDFDecoder config has unknown keys {unknown}; known: {sorted(known)}")
        return cls(**config)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> SDFDecoder:
        """A network from :data:`PRESETS` (``"tiny"``, ``"base"``), with keyword overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown SDFDecoder preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls.from_config({**PRESETS[name], **overrides})

    # --------------------------------------------------------------- condition --
    @staticmethod
    def _check_inputs(x: Tensor, t: Tensor, r: Tensor, cond: Any) -> tuple[Tensor, Tensor | None]:
        if not isinstance(cond, dict) or "context_points" not in cond:
            raise ValueError(
                "SDFDecoder needs cond = {'context_points': (B, Nc, 3)[, 'surface_points': "
                f"(B, Ns, 3)]}}, got {type(cond).__name__}"
            )
        unknown = sorted(set(cond) - {"context_points", "surface_points"})
        if unknown:
            raise ValueError(f"SDFDecoder: unknown cond keys {unknown}")
        if x.ndim != 2:
            raise ValueError(f"SDFDecoder: x must be (B, Nc) context values, got {tuple(x.shape)}")
        points = cond["context_points"]
        if points.shape != (*x.shape, 3):
            raise ValueError(
                f"SDFDecoder: context_points {tuple(points.shape)} do not match x {tuple(x.shape)}; expected (B, Nc, 3)"
            )
        for name, time in (("t", t), ("r", r)):
            if time.shape != (x.shape[0],):
                raise ValueError(f"SDFDecoder: {name} must be ({x.shape[0]},), got {tuple(time.shape)}")
        surface = cond.get("surface_points")
        if surface is not None and (
            surface.ndim != 3 or surface.shape[0] != x.shape[0] or surface.shape[2] != 3 or surface.shape[1] < 1
        ):
            raise ValueError(f"SDFDecoder: surface_points must be (B={x.shape[0]}, Ns, 3), got {tuple(surface.shape)}")
        return points, surface

    def _condition_tokens(self, surface: Tensor | None, batch: int) -> tuple[Tensor, Tensor | None]:
        """Condition tokens ``[null, surface...]`` and their key mask (``None``: attend to all)."""
        null = self.null_token.expand(batch, -1, -1)
        if surface is None:
            return null, None
        missing = torch.isnan(surface)
        unconditional = missing.all(dim=2).all(dim=1)
        if bool((missing.any(dim=2).any(dim=1) & ~unconditional).any()):
            raise ValueError("SDFDecoder: surface_points rows must be all finite or all NaN (= no condition)")
        if bool(torch.isinf(surface).any()):
            raise ValueError("SDFDecoder: surface_points contain inf")
        if not bool(unconditional.any()):
            return torch.cat([null, self.condition_embed(surface)], dim=1), None
        tokens = self.condition_embed(torch.nan_to_num(surface))
        keep = (~unconditional)[:, None].expand(-1, surface.shape[1])
        mask = torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)
        return torch.cat([null, tokens], dim=1), mask

    # ----------------------------------------------------------------- network --
    def encode(self, x: Tensor, t: Tensor, r: Tensor, cond: dict[str, Tensor]) -> DecoderState:
        """Latents of the field given context values ``x`` ``(B, Nc)``, times and condition."""
        points, surface = self._check_inputs(x, t, r, cond)
        batch = x.shape[0]
        emb = self.time_embedding(t, r).to(x.dtype)
        tokens = self.point_embed(points) + self.value_embed(x[..., None])
        condition, condition_mask = self._condition_tokens(surface, batch)
        latents = self.latents.expand(batch, -1, -1)
        for stage, chunk in zip(self.stages, tokens.tensor_split(len(self.stages), dim=1), strict=True):
            context = torch.cat([chunk, condition], dim=1)
            mask = None
            if condition_mask is not None:
                visible = torch.ones(chunk.shape[:2], dtype=torch.bool, device=x.device)
                mask = torch.cat([visible, condition_mask], dim=1)
            latents = stage(latents, emb, context, mask)
        return DecoderState(latents, emb)

    def query(self, state: DecoderState, query_points: Tensor) -> Tensor:
        """Values of the field at ``query_points`` ``(B, Nq, 3)`` -> ``(B, Nq)``."""
        batch = state.latents.shape[0]
        if query_points.ndim != 3 or query_points.shape[0] != batch or query_points.shape[2] != 3:
            raise ValueError(f"query_points must be (B={batch}, Nq, 3), got {tuple(query_points.shape)}")
        return self.head(self.point_embed(query_points), state.latents, state.time_embedding)

    def decode(self, x: Tensor, t: Tensor, r: Tensor, cond: dict[str, Tensor], query_points: Tensor) -> Tensor:
        """The network's values at arbitrary ``query_points`` ``(B, Nq, 3)`` -> ``(B, Nq)``.

        These are raw network outputs, in the same units as :meth:`forward`'s (for x1 they are the
        predicted clean values; under EDM's preconditioning, ``c_out * out`` is the denoiser's
        non-skip part). ``forward`` is ``decode`` at the context points.
        """
        return self.query(self.encode(x, t, r, cond), query_points)

    def forward(self, x: Tensor, t: Tensor, r: Tensor, cond: dict[str, Tensor]) -> Tensor:
        """Values at the context points ``(B, Nc)``: the ``FlowMap`` network call."""
        state = self.encode(x, t, r, cond)
        return self.query(state, cond["context_points"])
