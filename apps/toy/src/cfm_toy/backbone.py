"""``ToyMLP``: a small two-time residual MLP ``net(x, t, r, cond)`` for low-dimensional data.

The two times are embedded as ``TwoTimeEmbedding(TimeMLPEmbedding(...))`` (``emb_r`` a copy of
``emb_t``), so at ``r = t`` the network computes what a single-time network with the same weights
computes, and a multi-step checkpoint warm-starts it exactly
(:func:`cfm_core.nn.load_single_time_state_dict`). The embedding modulates every residual block
(FiLM: a per-block scale and shift of the normalised features). The points can enter through
:class:`~cfm_core.nn.FourierPointFeatures` (the toy config uses 3 octaves: on the checkerboard, raw
coordinates left every one-step map a smooth blob; see ``ToyNetConfig.fourier_levels``). The
output layer starts at zero, so a fresh network predicts zero everywhere. Plain torch ops only: it
runs under ``torch.func.jvp``.
"""

from __future__ import annotations

from cfm_core.nn import FourierPointFeatures, TimeMLPEmbedding, TwoTimeEmbedding, time_features
from torch import Tensor, nn


class FiLMResidualBlock(nn.Module):
    """``h + W2 silu(W1 (norm(h) * (1 + scale) + shift))`` with ``(scale, shift)`` from the
    embedding; the modulation starts at zero (an unmodulated block at initialisation)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.modulation = nn.Linear(hidden, 2 * hidden)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.modulation(emb).chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class ToyMLP(nn.Module):
    """A residual MLP on ``(B, dim)`` points with a two-time embedding.

    Args:
        dim: data dimension (2 for the toy distributions).
        hidden: width of the residual stream and of the time embedding.
        depth: number of residual blocks.
        time_embedding: ``"sinusoidal"`` or ``"fourier"`` features (the core's low-frequency
            defaults, :func:`cfm_core.nn.time_features`); the toy app uses ``"fourier"`` for
            every formulation.
        time_dim: number of time features fed to the embedding MLP (even).
        cond_dim: size of an optional vector condition ``(B, cond_dim)``, projected and added to
            the time embedding; 0 (default) means unconditional.
        fourier_levels: octaves of the point features ``sin/cos(2^k pi x)`` (0: raw coordinates).
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 256,
        depth: int = 4,
        time_embedding: str = "fourier",
        time_dim: int = 128,
        cond_dim: int = 0,
        fourier_levels: int = 0,
    ) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1 or cond_dim < 0:
            raise ValueError(
                f"need dim, hidden, depth >= 1 and cond_dim >= 0, got dim={dim}, hidden={hidden}, "
                f"depth={depth}, cond_dim={cond_dim}"
            )
        self.dim, self.cond_dim = dim, cond_dim
        features = time_features(time_embedding, time_dim)
        self.time_embed = TwoTimeEmbedding(TimeMLPEmbedding(hidden, features=features, feature_dim=time_dim))
        self.cond_embed = nn.Linear(cond_dim, hidden) if cond_dim else None
        self.embed_act = nn.SiLU()
        self.point_features = FourierPointFeatures(dim, fourier_levels)
        self.input = nn.Linear(self.point_features.out_features, hidden)
        self.blocks = nn.ModuleList(FiLMResidualBlock(hidden) for _ in range(depth))
        self.output_norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, dim)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: Tensor, t: Tensor, r: Tensor, cond: Tensor | None = None) -> Tensor:
        """``x`` ``(B, dim)``, times ``t``, ``r`` ``(B,)``, ``cond`` ``(B, cond_dim)`` or None."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        emb = self.time_embed(t, r).to(x.dtype)
        if cond is not None:
            if self.cond_embed is None:
                raise ValueError("this ToyMLP is unconditional (cond_dim=0) but got a condition")
            if cond.shape != (x.shape[0], self.cond_dim):
                raise ValueError(f"cond must have shape ({x.shape[0]}, {self.cond_dim}), got {tuple(cond.shape)}")
            emb = emb + self.cond_embed(cond.to(x.dtype))
        emb = self.embed_act(emb)
        h = self.input(self.point_features(x))
        for block in self.blocks:
            h = block(h, emb)
        return self.output(self.output_norm(h))
