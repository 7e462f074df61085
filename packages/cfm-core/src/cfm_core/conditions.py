"""Conditions: ``None``, a tensor, or a dict/list/tuple of tensors, one row per sample.

Helpers to take rows of a condition and to replace rows by the null condition (the condition that
means "unconditional", used by condition dropout in training and classifier-free guidance).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Condition = Tensor | dict[str, Tensor] | Sequence[Tensor] | None


def select_condition(cond: Condition, index: Tensor) -> Condition:
    """Rows ``index`` of a condition that is ``None``, a tensor, or a dict/list/tuple of tensors."""
    if cond is None:
        return None
    if isinstance(cond, Tensor):
        return cond[index]
    if isinstance(cond, dict):
        return {k: select_condition(v, index) for k, v in cond.items()}
    if isinstance(cond, (list, tuple)):
        return type(cond)(select_condition(v, index) for v in cond)
    raise TypeError(f"unsupported condition type {type(cond).__name__}; use a tensor, dict, list or tuple")


def replace_rows(cond: Condition, null_cond: Condition, mask: Tensor) -> Condition:
    """``cond`` with the rows in ``mask`` replaced by ``null_cond`` (same structure, broadcastable).

    A ``None`` entry of a dict/tuple ``null_cond`` keeps that part of the condition as it is (e.g.
    query positions that are inputs, not a condition to drop)."""
    if null_cond is None:
        return cond
    if isinstance(cond, Tensor):
        null = torch.as_tensor(null_cond, dtype=cond.dtype, device=cond.device).expand_as(cond)
        return torch.where(mask.reshape((-1,) + (1,) * (cond.ndim - 1)), null, cond)
    if isinstance(cond, dict):
        return {k: replace_rows(v, null_cond[k], mask) for k, v in cond.items()}
    return type(cond)(replace_rows(v, n, mask) for v, n in zip(cond, null_cond, strict=True))


def null_like(cond: Condition, null_cond: Condition) -> Condition:
    """A whole batch of the null condition, shaped like ``cond``."""
    all_rows = torch.ones(_batch_size(cond), dtype=torch.bool, device=_device(cond))
    return replace_rows(cond, null_cond, all_rows)


def _batch_size(cond: Condition) -> int:
    if isinstance(cond, Tensor):
        return cond.shape[0]
    first = next(iter(cond.values())) if isinstance(cond, dict) else cond[0]
    return _batch_size(first)


def _device(cond: Condition) -> torch.device:
    if isinstance(cond, Tensor):
        return cond.device
    first = next(iter(cond.values())) if isinstance(cond, dict) else cond[0]
    return _device(first)
