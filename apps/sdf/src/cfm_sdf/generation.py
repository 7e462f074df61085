"""Generate SDF fields: sample the values at the context points, and read the field anywhere.

The flow map moves the values at the context points (the state ``(B, Nc)``). The generated field
at any other points (a marching-cubes grid, metric points) follows from the same network, since
its query head evaluates any point from the latents of the context (see ``backbone.py``):

* **Final-field path** (formulations without preconditioning whose update into the data end
  returns the field, ``F[m, x, t, t_data] = m``: x1 and ddim's x0-prediction): the last network call's output
  *is* the generated field, so the extra points are read once, from that call's latents, after
  sampling. Exact, and it costs one query pass however many steps the sampler took. With
  classifier-free guidance the last step's output is ``m_null + w (m_cond - m_null)``, so the
  extra points are read from the latents of both of its calls and mixed the same way.
* **Ride-along path** (every other formulation, e.g. edm whose ``D = c_skip x + c_out net`` needs
  the state at the point, ddim's epsilon-prediction, or u): the extra points join the state, with
  their own values of the same correlated noise field, and every network call evaluates them too;
  the core's samplers update them exactly like the context values. Exact for any formulation and sampler, but each
  step pays for the extra points.

Both paths draw one noise grid per shape (:func:`~cfm_sdf.representation.correlated_noise`), so
the noise at the context points is the same whichever path runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from cfm_core.flow_map import FlowMap
from cfm_core.formulations import Formulation
from torch import Tensor

from cfm_sdf.model import EXTRA_POINTS_KEY, FieldNet, query_in_chunks
from cfm_sdf.representation import correlated_noise

SAMPLERS = ("cumulative", "euler", "heun")


@dataclass
class GeneratedFields:
    """Generated values (network units, negative inside) at the context and the extra points."""

    context_values: Tensor  # (B, Nc)
    extra_values: Tensor  # (B, Ne)
    nfe: int
    seconds: float
    """Wall time of the whole generation (noise, sampling, extra points), synchronised on CUDA."""


def field_is_network_output(formulation: Formulation) -> bool:
    """True when the sampled state at the data end is the last raw network output: the update
    into the data end returns the field (``F[m, x, t, t_data] = m``) and no preconditioning
    mixes the state into the field (``m = net``; both checked on their coefficients, the
    preconditioning's with constant networks)."""
    t = formulation.time_from_unit(torch.tensor([0.5]))
    r = torch.tensor([formulation.t_data])
    one, zero = torch.ones(1, 1), torch.zeros(1, 1)

    def field(net_output: Tensor, x: Tensor) -> Tensor:
        return formulation.precondition(lambda *_: net_output, x, t, t)

    return bool(
        torch.allclose(field(one, zero), one)
        and torch.allclose(field(zero, one), zero)
        and torch.allclose(formulation.update(one, zero, t, r), one)
        and torch.allclose(formulation.update(zero, one, t, r), zero)
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def generate_fields(
    model: FlowMap,
    cond: dict[str, Tensor],
    extra_points: Tensor,
    steps: int,
    sampler: str = "cumulative",
    noise_grid: int = 16,
    generator: torch.Generator | None = None,
    guidance: float = 1.0,
) -> GeneratedFields:
    """Generate a batch of fields and read them at ``extra_points`` ``(B, Ne, 3)``.

    Args:
        model: a FlowMap whose ``net`` is a :class:`~cfm_sdf.model.FieldNet`.
        cond: ``{"context_points": (B, Nc, 3)[, "surface_points": (B, Ns, 3)]}``.
        extra_points: where else to read the generated field (may hold zero points).
        steps: jumps (``"cumulative"``) or solver steps (``"euler"``, ``"heun"``).
        sampler: ``"cumulative"`` (CFM) or an instantaneous solver (the multi-step baseline).
        noise_grid: nodes per axis of the correlated noise (as in training).
        generator: a CPU generator for the noise grids (reproducible runs).
        guidance: classifier-free guidance scale (1: none); needs ``surface_points`` and a model
            with a null condition (trained with condition dropout).
    """
    if not isinstance(model.net, FieldNet):
        raise TypeError(f"model.net must be a FieldNet, got {type(model.net).__name__}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if guidance != 1.0 and (cond.get("surface_points") is None or model.null_cond is None):
        raise ValueError(
            "guidance != 1 needs surface points to guide towards and a model with a "
            "null condition (trained with condition dropout)"
        )
    context = cond["context_points"]
    if extra_points.ndim != 3 or extra_points.shape[0] != context.shape[0] or extra_points.shape[2] != 3:
        raise ValueError(f"extra_points must be (B={context.shape[0]}, Ne, 3), got {tuple(extra_points.shape)}")
    device = context.device
    final_field = field_is_network_output(model.formulation)
    n = context.shape[1]
    _synchronize(device)
    start = time.perf_counter()
    noise_points = context if final_field else torch.cat([context, extra_points], dim=1)
    noise = correlated_noise(noise_points.cpu(), noise_grid, generator).to(device)
    full_cond = {**cond, EXTRA_POINTS_KEY: extra_points}
    with model.net.recording():
        x, nfe = model.sample(noise, steps, sampler=sampler, cond=full_cond, guidance=guidance, return_nfe=True)
        if final_field:
            extra = _read_final_field(model.net, extra_points, guidance)
        else:
            extra = x[:, n:]
    _synchronize(device)
    return GeneratedFields(x[:, :n], extra, nfe, time.perf_counter() - start)


def _read_final_field(net: FieldNet, points: Tensor, guidance: float) -> Tensor:
    """The generated field at ``points`` from the latents of the sampler's last step (see the
    module doc): its one call, or with guidance its conditioned and unconditioned calls mixed."""
    states = net.last_states
    if guidance == 1.0:
        (state,) = states.values()
        return query_in_chunks(net.decoder, state, points)
    conditioned = query_in_chunks(net.decoder, states[True], points)
    unconditioned = query_in_chunks(net.decoder, states[False], points)
    return unconditioned + guidance * (conditioned - unconditioned)
