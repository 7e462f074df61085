"""Per-step random streams: every step reseeds the RNGs, so runs reproduce and resume exactly.

A fresh run's initial weights come from :func:`seed_initial_weights`, called before the model is
built: without it they depend on torch's per-process random seed and on whatever drew random numbers
earlier in the process, and two runs with the same config differ.

Step ``s`` first seeds stream 0 (shared by every process) and draws its batch, then seeds stream
``1 + k`` for the noise and times of the loss on chunk ``k`` of the batch (chunk ``k`` is
micro-batch ``k // world`` of process ``k % world``; one per process without gradient
accumulation). No RNG state needs saving: the seeds are a function of ``(seed, step, stream)``
alone.
"""

from __future__ import annotations

import random

import numpy as np
import torch

DATA_STREAM = 0


def step_seed(seed: int, step: int, stream: int) -> int:
    """A well-mixed 32-bit seed for ``(seed, step, stream)`` (numpy's ``SeedSequence``)."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(1)[0])


def loss_stream(chunk: int) -> int:
    """The stream of the loss randomness (noise, times, condition dropout) of chunk ``chunk`` of a
    step's global batch: micro-batch ``m`` of process ``rank`` of ``world`` is chunk ``m * world + rank``."""
    return 1 + chunk


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_initial_weights(seed: int) -> None:
    """Seed every RNG before building a fresh model, so its initial weights follow ``seed`` alone.

    Every app's ``train`` calls it with the training seed right before ``build_model``.
    """
    seed_everything(seed)
