"""The two-time embedding and the warm start of a two-time network from a single-time checkpoint.

CFM's only architectural change: a second time input ``r``. Any single-time embedding ``emb(t)``
becomes ``(emb_t(t) + emb_r(r)) / 2`` with ``emb_r`` initialised as a copy of ``emb_t``, so that at
``r = t`` the network computes exactly what the single-time network computed. That makes a trained
multi-step checkpoint a warm start for CFM training (the paper's self-distillation mode).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from torch import Tensor, nn


class TwoTimeEmbedding(nn.Module):
    """``(emb_t(t) + emb_r(r)) / 2`` around any single-time embedding module.

    Args:
        embedding: the single-time embedding (``emb(t) -> (B, D)``); it becomes ``emb_t``, and a
            deep copy becomes ``emb_r``.
    """

    def __init__(self, embedding: nn.Module) -> None:
        super().__init__()
        self.emb_t = embedding
        self.emb_r = copy.deepcopy(embedding)

    def forward(self, t: Tensor, r: Tensor) -> Tensor:
        return 0.5 * (self.emb_t(t) + self.emb_r(r))


def two_time_key_map(two_time_net: nn.Module, single_keys: list[str]) -> dict[str, list[str]]:
    """For each key of a single-time state dict, the keys of ``two_time_net`` it initialises.

    A key under the path of a :class:`TwoTimeEmbedding` (``path.rest``) maps to both
    ``path.emb_t.rest`` and ``path.emb_r.rest``; every other key maps to itself.
    """
    prefixes = [name for name, mod in two_time_net.named_modules() if isinstance(mod, TwoTimeEmbedding)]
    mapping: dict[str, list[str]] = {}
    for key in single_keys:
        for prefix in prefixes:
            head = f"{prefix}." if prefix else ""
            if key.startswith(head) and not key.startswith(f"{head}emb_t.") and not key.startswith(f"{head}emb_r."):
                rest = key[len(head) :]
                mapping[key] = [f"{head}emb_t.{rest}", f"{head}emb_r.{rest}"]
                break
        else:
            mapping[key] = [key]
    return mapping


def load_single_time_state_dict(two_time_net: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Load a single-time (multi-step) checkpoint into a two-time network, strictly.

    Keys under each :class:`TwoTimeEmbedding` are copied into both ``emb_t`` and ``emb_r``; a
    state dict that already holds two-time keys (a two-time checkpoint) loads as it is. Missing or
    unexpected keys raise ``KeyError`` naming them. Afterwards ``net(x, t, t)`` equals the single-time
    network's ``net(x, t)`` exactly.
    """
    own = two_time_net.state_dict()
    if set(state_dict) == set(own):
        two_time_net.load_state_dict(state_dict)
        return
    expanded: dict[str, Tensor] = {}
    for key, targets in two_time_key_map(two_time_net, list(state_dict)).items():
        for target in targets:
            expanded[target] = state_dict[key]
    missing = sorted(set(own) - set(expanded))
    unexpected = sorted(set(expanded) - set(own))
    if missing or unexpected:
        raise KeyError(
            f"single-time checkpoint does not fit the two-time network: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
        )
    two_time_net.load_state_dict(expanded)
