"""The deprecated ``CumulativeFlowMap`` and ``sample_instantaneous``: warn, and match the new API."""

from __future__ import annotations

import pytest
import torch
from cfm_core import CFMLoss, CumulativeFlowMap, FlowMap, LossRecipe
from cfm_core.training import Trainer

from .conftest import SmoothNet
from .test_training_fixtures import TinyNet, gaussian_data, make_loss, train_config

OPTIONS = [
    {},
    {"instantaneous_ratio": 0.25, "derivative": "finite_difference", "target_field": "model"},
    {"time_sampler": "logit_normal", "adaptive_p": 1.0, "field_weighting": "none"},
    {"coupling": "minibatch_ot", "ot_block": 4, "derivative": "jvp_one_pass"},
]


def _old(net, formulation="u", **options):
    with pytest.warns(DeprecationWarning, match="CumulativeFlowMap is deprecated"):
        return CumulativeFlowMap(net, formulation, **options)


@pytest.mark.parametrize("options", OPTIONS)
def test_the_old_model_gives_the_new_loss(formulation, options):
    if formulation.name == "ddim" and options.get("target_field") == "model":
        options = {**options, "target_field": "conditional"}
    old = _old(SmoothNet(dropout=0.2), formulation, **options)
    new = CFMLoss(FlowMap(SmoothNet(dropout=0.2), formulation), LossRecipe(**options))
    x = torch.randn(12, 3)
    losses = []
    for call in (old, old.loss, new):
        torch.manual_seed(4)
        losses.append(call(x))
    assert torch.equal(losses[0], losses[2]) and torch.equal(losses[1], losses[2])
    assert set(old.state_dict()) == set(new.model.state_dict()) == {k for k in old.state_dict() if k.startswith("net.")}
    assert all(not isinstance(m, CFMLoss) for m in old.modules())  # the loss is not a submodule


def test_the_old_conditional_model_keeps_its_options_and_signatures():
    old = _old(SmoothNet(), "u", null_cond=torch.tensor(0.0), cond_dropout=0.3, formulation_options={})
    assert old.cfm_loss.recipe.cond_dropout == 0.3 and old.cfm_loss.model is old
    noise, cond = torch.randn(5, 3), torch.ones(5, 1)
    new = FlowMap(old.net, "u", null_cond=torch.tensor(0.0))
    torch.testing.assert_close(old.sample(noise, 2, cond, 2.0), new.sample(noise, 2, cond=cond, guidance=2.0))
    with pytest.raises(ValueError, match="needs null_cond"):
        _old(SmoothNet(), "u", cond_dropout=0.1)


@pytest.mark.parametrize("method", ["euler", "heun", "ddim"])
def test_sample_instantaneous_warns_and_is_sample_with_that_sampler(method):
    model = FlowMap(SmoothNet(), "x1")
    noise = torch.randn(6, 3)
    with pytest.warns(DeprecationWarning, match="sample_instantaneous is deprecated"):
        old, nfe = model.sample_instantaneous(noise, steps=3, method=method, return_nfe=True)
    new, new_nfe = model.sample(noise, 3, sampler=method, return_nfe=True)
    assert torch.equal(old, new) and nfe == new_nfe
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="unknown sampling method"):
        model.sample_instantaneous(noise, method="cumulative")


def test_the_trainer_trains_an_old_model_like_its_loss(tmp_path):
    torch.manual_seed(0)
    old = _old(TinyNet(), "u", instantaneous_ratio=0.5, derivative="jvp")
    weights = []
    for name, loss in (("old", old), ("new", make_loss())):
        trainer = Trainer(loss, gaussian_data, train_config(tmp_path / name, steps=2), run_config={}, app="test")
        trainer.fit()
        weights.append(trainer.unwrapped_model.state_dict())
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
