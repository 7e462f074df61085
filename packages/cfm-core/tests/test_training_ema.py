"""EMA: the update against a hand computation for two decays, warm-up, state and model copies."""

from __future__ import annotations

import pytest
import torch
from cfm_core.training import EMA
from torch import nn


class Pair(nn.Module):
    """Two parameters, one tied under a second name, plus a buffer and an integer buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor([1.0, -2.0]))
        self.b = nn.Linear(1, 1, bias=False)
        self.tied = self.b
        self.register_buffer("scale", torch.tensor(3.0))


def _set(module: Pair, a, b) -> None:
    with torch.no_grad():
        module.a.copy_(torch.tensor(a))
        module.b.weight.fill_(b)


def test_update_matches_a_hand_computation_for_two_decays():
    module = Pair()
    _set(module, [1.0, -2.0], 0.5)
    ema = EMA(module, (0.9, 0.5))
    history = [([3.0, 0.0], 1.5), ([-1.0, 4.0], 2.5), ([0.5, 0.5], -1.0)]
    expected = {0.9: ([1.0, -2.0], 0.5), 0.5: ([1.0, -2.0], 0.5)}
    for a, b in history:
        _set(module, a, b)
        ema.update()
        for d, (avg_a, avg_b) in expected.items():
            expected[d] = ([d * x + (1 - d) * y for x, y in zip(avg_a, a, strict=True)], d * avg_b + (1 - d) * b)
    # e.g. decay 0.5 on a[0]: 1 -> 2 -> 0.5 -> 0.5
    assert expected[0.5][0][0] == pytest.approx(0.5)
    for d, (avg_a, avg_b) in expected.items():
        averages = ema.averages[d]
        assert torch.allclose(averages["a"], torch.tensor(avg_a), atol=1e-6), d
        assert averages["b.weight"].item() == pytest.approx(avg_b, abs=1e-6)
        assert averages["tied.weight"].item() == pytest.approx(avg_b, abs=1e-6)
        assert averages["a"].dtype == torch.float32
    assert ema.updates == 3


def test_warmup_decay_follows_the_emawarmup_law():
    module = Pair()
    ema = EMA(module, (0.999, 0.5), warmup_power=0.75)
    assert ema.effective_decay(0.999) == 0.0  # the first update copies the weights
    _set(module, [5.0, 6.0], 7.0)
    ema.update()
    assert torch.equal(ema.averages[0.999]["a"], torch.tensor([5.0, 6.0]))
    for n in range(1, 40):
        ema.updates = n
        assert ema.effective_decay(0.999) == pytest.approx(min(0.999, 1 - (1 + n) ** -0.75))
        assert ema.effective_decay(0.5) == pytest.approx(min(0.5, 1 - (1 + n) ** -0.75))
    assert EMA(module, (0.9,)).effective_decay(0.9) == 0.9


def test_copy_holds_the_average_and_leaves_the_module_alone():
    module = Pair()
    _set(module, [0.0, 0.0], 0.0)
    ema = EMA(module, (0.5, 0.25))
    _set(module, [2.0, 4.0], 8.0)
    ema.update()
    copy = ema.copy()
    assert torch.equal(copy.a, torch.tensor([1.0, 2.0])) and copy.b.weight.item() == 4.0
    assert copy.tied is copy.b and copy.scale.item() == 3.0
    assert not copy.training and not copy.a.requires_grad
    assert ema.copy(0.25).a.tolist() == [1.5, 3.0]
    assert module.a.tolist() == [2.0, 4.0] and module.a.requires_grad
    with pytest.raises(KeyError, match="0.7"):
        ema.copy(0.7)
    with pytest.raises(ValueError, match="no decays"):
        EMA(module, ()).copy()


def test_state_dict_round_trip_and_mismatch_errors():
    module = Pair()
    ema = EMA(module, (0.9, 0.5))
    _set(module, [1.0, 1.0], 1.0)
    ema.update()
    other = EMA(Pair(), (0.5, 0.9))
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    for d in (0.9, 0.5):
        for name, value in ema.averages[d].items():
            assert torch.equal(other.averages[d][name], value)
    with pytest.raises(ValueError, match="decays"):
        EMA(Pair(), (0.9,)).load_state_dict(ema.state_dict())
    with pytest.raises(KeyError, match="missing"):
        EMA(nn.Linear(2, 2), (0.9, 0.5)).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match="decays"):
        EMA(module, (1.0,))
