"""Generating points from a trained shape model: noise in the network's layout, batched sampling
with a progress bar, and the decoding back to the shape's units.

A per-point network (:class:`~cfm_geometry.backbones.PointMLP`) samples ``(B, 3)`` rows; a set
network (:class:`~cfm_geometry.backbones.PointTransformer`) samples ``(B, set_size, 3)`` sets whose
points attend to each other. Either way the result is flattened to ``(N, 3)`` points.

The noise is drawn in fixed blocks of rows, each from its own generator seeded by ``(seed,
block)``, so the noise of a row, and hence the generated cloud, does not depend on the batch size.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from cfm_core.flow_map import FlowMap
from torch import Tensor
from tqdm.auto import tqdm

SAMPLERS = ("cumulative", "euler", "heun")
#: Points per noise block (see the module docstring).
NOISE_BLOCK_POINTS = 1 << 14
#: Default points per network batch: large on a GPU; small on the CPU, where a small network's
#: activations then stay in the cache.
DEFAULT_BATCH_POINTS = {"cuda": 1 << 18, "cpu": 1 << 12}


def point_noise(points: int, set_size: int | None, seed: int, first_point: int = 0) -> Tensor:
    """Standard normal noise for points ``first_point`` to ``first_point + points``: ``(points,
    3)``, or ``(ceil(points / set_size), set_size, 3)`` sets (``first_point`` a multiple of
    ``set_size``); the same rows get the same noise whatever the batch."""
    per_row = set_size or 1
    if first_point % per_row:
        raise ValueError(f"first_point {first_point} is not a multiple of set_size {set_size}")
    row_shape = (3,) if set_size is None else (set_size, 3)
    block = max(1, NOISE_BLOCK_POINTS // per_row)
    first, count = first_point // per_row, math.ceil(points / per_row)
    blocks = range(first // block, (first + count - 1) // block + 1)
    noise = torch.cat([torch.randn(block, *row_shape, generator=_block_generator(seed, index)) for index in blocks])
    offset = first - blocks[0] * block
    return noise[offset : offset + count]


def _block_generator(seed: int, block: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(block)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def flatten_points(samples: Tensor, points: int) -> Tensor:
    """``(N, 3)`` from ``(N, 3)`` rows or ``(S, set_size, 3)`` sets, cut to ``points`` rows."""
    return samples.reshape(-1, samples.shape[-1])[:points]


def run_sampler(model: FlowMap, noise: Tensor, steps: int | Sequence[float], sampler: str) -> tuple[Tensor, int]:
    """One batch: CFM ``steps`` jumps (``cumulative``) or the r = t field's ``euler`` / ``heun``
    solver (``steps``: a count on the default grid, or the grid's times); returns the samples and
    the number of network evaluations."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    return model.sample(noise, steps, sampler=sampler, return_nfe=True)


def _shared_times(model: FlowMap) -> contextlib.AbstractContextManager:
    """The network's ``shared_times`` context (one time embedding per batch) if it has one."""
    shared = getattr(model.net, "shared_times", None)
    return shared() if callable(shared) else contextlib.nullcontext()


def default_batch_points(device: torch.device) -> int:
    """Points per network batch when none is given (see :data:`DEFAULT_BATCH_POINTS`)."""
    return DEFAULT_BATCH_POINTS.get(device.type, DEFAULT_BATCH_POINTS["cuda"])


def generate_points(
    model: FlowMap,
    points: int,
    steps: int | Sequence[float],
    sampler: str,
    batch_size: int | None,
    seed: int,
    set_size: int | None = None,
) -> tuple[Tensor, int, float]:
    """``points`` generated points ``(points, 3)`` in the network's (normalised) units, on the
    CPU, sampled in batches of about ``batch_size`` points (None: :func:`default_batch_points`)
    on the model's device with a progress bar (so memory stays bounded whatever ``points``);
    returns them, the NFE per point and the wall time of the sampling in seconds (noise, network
    and copies to the CPU; synchronised on CUDA)."""
    device = next(model.parameters()).device
    batch_size = batch_size or default_batch_points(device)
    per_row = set_size or 1
    per_batch = max(1, batch_size // per_row) * per_row
    chunks, nfe = [], 0
    _synchronise(device)
    started = time.perf_counter()
    with (
        _shared_times(model),
        tqdm(total=points, desc=f"{sampler} x{steps}", unit="pt", unit_scale=True, dynamic_ncols=True) as bar,
    ):
        for start in range(0, points, per_batch):
            count = min(per_batch, points - start)
            noise = point_noise(count, set_size, seed, first_point=start).to(device)
            x, nfe = run_sampler(model, noise, steps, sampler)
            chunks.append(flatten_points(x, count).cpu())
            bar.update(count)
    _synchronise(device)
    return torch.cat(chunks), nfe, time.perf_counter() - started


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def finite_rows(points: Tensor | np.ndarray) -> tuple[np.ndarray, int]:
    """The rows of ``(N, 3)`` points that are finite (float64) and how many were dropped: a
    diverged model must not crash the metrics or the pictures."""
    if isinstance(points, Tensor):
        points = points.detach().cpu().numpy()
    points = np.asarray(points, dtype=np.float64)
    keep = np.isfinite(points).all(axis=1)
    return points[keep], int((~keep).sum())
