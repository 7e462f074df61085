"""Per-step random streams: every step reseeds the RNGs, so runs reproduce and resume exactly.

A fresh run's initial weights come from :func:`seed_initial_weights`, called before the model is
built: without it they depend on torch's per-process random seed and on whatever drew random numbers
earlier in the process, and two runs with the same config differ.

Step ``s`` first seeds stream 0 (shared by every process) and draws its batch, then seeds stream
``1 + rank`` (one per process) for the noise and times of the loss. No RNG state needs saving:
the seeds are a function of ``(seed, step, stream)`` alone.
"""

from __future__ import annotations

import random

import numpy as np
import torch

DATA_STREAM = 0


def step_seed(seed: int, step: int, stream: int) -> int:
    """A well-mixed 32-bit seed for ``(seed, step, stream)`` (numpy's ``SeedSequence``)."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(1)[0])


def loss_stream(rank: int) -> int:
    """The stream of process ``rank``'s loss randomness (noise, times, condition dropout)."""
    return 1 + rank


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
