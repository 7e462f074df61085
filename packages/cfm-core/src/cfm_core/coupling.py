"""Couplings: which noise row each data row of a training batch is paired with.

``"independent"`` keeps the noise as drawn (the paper; every formulation's textbook objective).
``"minibatch_ot"`` re-pairs the batch's noise rows with its data rows by an exact optimal assignment
(minimum total squared distance; Tong et al. 2023, Pooladian et al. 2023). The set of noise rows is
unchanged, so the noise marginal stays standard normal and sampling is unchanged; but the paths from
noise to data stop crossing, the conditional targets lose most of their variance, and the one-step
map becomes far easier to learn (BENCHMARKS.md: the toy sections with and without it).

The cost ``|x_i - n_j|^2`` suits every formulation: for any ``|a x_i - b n_j|^2`` with
``a, b > 0`` (EDM's ``x + sigma n``, DDIM's ``alpha x + sigma n``) only the cross term
``-2ab x_i . n_j`` depends on the pairing, so the optimal pairing is the same.

Conditional models are refused by :class:`~cfm_core.CFMLoss`: pairing across rows with
different conditions would make the noise of a condition no longer standard normal.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

COUPLINGS = ("independent", "minibatch_ot")


def minibatch_ot_pairing(x_data: Tensor, noise: Tensor, block: int = 1024) -> Tensor:
    """``noise`` with its rows permuted to minimise ``sum_i |x_data_i - noise_i|^2``.

    The batch is cut into consecutive blocks of at most ``block`` rows, each assigned exactly
    (Hungarian algorithm, ``O(block^3)``): a minibatch coupling of that size. Under DDP every process
    pairs its own rows. Returns a tensor on ``noise``'s device and dtype.
    """
    if noise.shape != x_data.shape or x_data.ndim < 2:
        raise ValueError(
            f"noise {tuple(noise.shape)} and x_data {tuple(x_data.shape)} must have the same shape (batch, ...)"
        )
    if block < 2:
        raise ValueError(f"block must be at least 2 rows, got {block}")
    order = []
    for start in range(0, x_data.shape[0], block):
        x = x_data[start : start + block].detach().flatten(1).double().cpu()
        n = noise[start : start + block].detach().flatten(1).double().cpu()
        _, columns = linear_sum_assignment(torch.cdist(x, n).pow(2).numpy())
        order.append(torch.as_tensor(columns) + start)
    return noise[torch.cat(order).to(noise.device)]
