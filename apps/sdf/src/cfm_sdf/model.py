"""The SDF app's model: the decoder as a CFM network over field values, trained with correlated
noise.

**State.** The flow map moves the SDF values at a set of points: the ``Nc`` context points (uniform
in the volume) and, optionally, *extra points* after them (``cond[EXTRA_POINTS_KEY]``, ``(B, Ne,
3)``): ``x`` is ``(B, Nc)`` or ``(B, Nc + Ne)``. :class:`FieldNet` encodes the context values only
(the latents see the context, as Functional Diffusion's) and its query head evaluates the field at
the context and the extra points. Training puts near-surface and surface points in the state as
extra points, so the CFM loss reaches the surface (FD's loss is on such query points too); the
extra points never influence the context, so sampling may leave them out of the state
(:mod:`cfm_sdf.generation`).

**Noise.** Functional Diffusion's noise is a spatially correlated *field*
(:func:`~cfm_sdf.representation.correlated_noise`). :class:`CorrelatedNoiseSampler` is the
model's ``noise_sampler`` (the core's hook, called in training when no ``noise=`` is given): it
draws one noise grid per row, with the global torch RNG, and reads it at the state's points (the
context points, then the extra points) taken from the condition. The core's trainer seeds torch
every step, so runs reproduce and resume exactly; under DDP each process draws the noise of its
own rows.

**Classifier-free guidance.** A conditional model's null condition is :data:`NULL_CONDITION`: the
surface points of a dropped row become NaN (the decoder's "no condition" sentinel, see
:data:`~cfm_sdf.backbone.NULL_SURFACE_VALUE`) while its context and extra points stay, so
``--method.cond-dropout`` trains the unconditional mode and ``guidance`` mixes both at sampling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from cfm_core.cli import ConfigError, config_from_dict
from cfm_core.conditions import Condition
from cfm_core.loss import CFMLoss
from cfm_core.method import build_cfm
from cfm_core.nn import time_features_for
from torch import Tensor, nn

from cfm_sdf.backbone import NULL_SURFACE_VALUE, DecoderState, SDFDecoder
from cfm_sdf.config import SdfTrainConfig
from cfm_sdf.representation import correlated_noise

#: The condition key of the extra points ``(B, Ne, 3)`` (stripped before the decoder sees it).
EXTRA_POINTS_KEY = "extra_points"
#: The null condition of a conditional model (for ``FlowMap(null_cond=...)``): the
#: surface points become the decoder's "no condition" sentinel; ``None`` keeps the context and the
#: extra points as they are (they are inputs, not a condition to drop).
NULL_CONDITION: dict[str, Any] = {
    "context_points": None,
    "surface_points": NULL_SURFACE_VALUE,
    EXTRA_POINTS_KEY: None,
}
#: Points (over the whole batch) the query head evaluates at once.
QUERY_BUDGET = 2**18


def query_in_chunks(decoder: SDFDecoder, state: DecoderState, points: Tensor) -> Tensor:
    """``decoder.query`` over ``points`` ``(B, N, 3)``, at most :data:`QUERY_BUDGET` at a time."""
    if points.shape[1] == 0:
        return points.new_zeros(points.shape[:2])
    rows = max(1, QUERY_BUDGET // points.shape[0])
    return torch.cat([decoder.query(state, chunk) for chunk in points.split(rows, dim=1)], dim=1)


class FieldNet(nn.Module):
    """``net(x, t, r, cond)`` over the values at the context points, then at the extra points
    (see the module doc). Inside :meth:`recording` it keeps the latents of its latest
    conditioned call and of its latest unconditioned call (:attr:`last_states`), from which the
    generated field can be read anywhere after sampling (with or without guidance)."""

    def __init__(self, decoder: SDFDecoder) -> None:
        super().__init__()
        self.decoder = decoder
        self.last_states: dict[bool, DecoderState] = {}
        self._recording = False

    @contextlib.contextmanager
    def recording(self) -> Iterator[FieldNet]:
        """Within the block, keep the latest call's latents in :attr:`last_states` under
        ``True`` when the call was conditioned on surface points and ``False`` when none of its
        rows was (cleared on exit, so that no tensor of a graph stays on the module: EMA copies
        deep-copy it)."""
        self._recording = True
        self.last_states = {}
        try:
            yield self
        finally:
            self._recording = False
            self.last_states = {}

    def forward(self, x: Tensor, t: Tensor, r: Tensor, cond: dict[str, Tensor]) -> Tensor:
        if not isinstance(cond, dict):
            raise ValueError(f"FieldNet needs a dict condition, got {type(cond).__name__}")
        decoder_cond = {k: v for k, v in cond.items() if k != EXTRA_POINTS_KEY}
        points = decoder_cond.get("context_points")
        n = x.shape[1] if points is None else points.shape[1]
        state = self.decoder.encode(x[:, :n], t, r, decoder_cond)
        if self._recording:
            self.last_states[_is_conditioned(decoder_cond)] = state
        values = query_in_chunks(self.decoder, state, points)
        if x.shape[1] == n:
            return values
        extra = cond.get(EXTRA_POINTS_KEY)
        if extra is None or extra.shape[:2] != (x.shape[0], x.shape[1] - n):
            raise ValueError(
                f"FieldNet: x has {x.shape[1]} values for {n} context points; the "
                f"{x.shape[1] - n} others need cond[{EXTRA_POINTS_KEY!r}] of shape "
                f"({x.shape[0]}, {x.shape[1] - n}, 3), got "
                f"{None if extra is None else tuple(extra.shape)}"
            )
        return torch.cat([values, query_in_chunks(self.decoder, state, extra)], dim=1)


def _is_conditioned(cond: dict[str, Tensor]) -> bool:
    """False when no row of ``cond`` has surface points (the key is absent or all NaN)."""
    surface = cond.get("surface_points")
    return surface is not None and not bool(torch.isnan(surface).all())


@dataclass(frozen=True)
class CorrelatedNoiseSampler:
    """The SDF model's training ``noise_sampler(x_data, cond)``: correlated noise (a
    ``grid_res^3`` grid per row, from the global torch RNG) at the points of the state's values,
    i.e. ``cond["context_points"]`` and then, when ``x_data`` holds more values,
    ``cond[EXTRA_POINTS_KEY]`` (see the module doc)."""

    grid_res: int

    def __call__(self, x_data: Tensor, cond: Condition) -> Tensor:
        if not isinstance(cond, dict) or cond.get("context_points") is None:
            raise ValueError("the correlated noise needs a dict condition with 'context_points'")
        points = cond["context_points"]
        extra = cond.get(EXTRA_POINTS_KEY)
        if x_data.ndim == 2 and x_data.shape[1] > points.shape[1] and extra is not None:
            points = torch.cat([points, extra], dim=1)
        if x_data.shape != points.shape[:2]:
            raise ValueError(
                f"the correlated noise needs one point per value: x_data is "
                f"{tuple(x_data.shape)}, the condition holds points "
                f"{tuple(points.shape[:2])} (context, then {EXTRA_POINTS_KEY!r})"
            )
        return correlated_noise(points, self.grid_res).to(x_data.dtype)


def build_decoder(cfg: SdfTrainConfig) -> SDFDecoder:
    """The decoder a train config describes (fresh weights)."""
    overrides = {
        name: getattr(cfg.net, name)
        for name in ("width", "num_latents", "stages")
        if getattr(cfg.net, name) is not None
    }
    try:
        return SDFDecoder.from_preset(
            cfg.net.preset, time_features=time_features_for(cfg.method.formulation, cfg.net.time_features), **overrides
        )
    except ValueError as err:
        raise ConfigError(f"--net: {err}") from None


def build_model(run_config: dict[str, Any]) -> CFMLoss:
    """The loss an SDF run config describes (fresh weights): ``FieldNet(decoder)`` in a
    FlowMap (its ``.model``) trained with :class:`CorrelatedNoiseSampler` (``--data.noise-grid``), with
    :data:`NULL_CONDITION` unless unconditional (rows are dropped in training only when
    ``--method.cond-dropout`` > 0)."""
    cfg = config_from_dict(SdfTrainConfig, run_config)
    null_cond = None if cfg.unconditional else NULL_CONDITION
    return build_cfm(
        FieldNet(build_decoder(cfg)),
        cfg.method,
        null_cond=null_cond,
        noise_sampler=CorrelatedNoiseSampler(cfg.data.noise_grid),
    )
