"""MethodConfig: the loss recipe's validation as ConfigError, stored configs, and build_cfm."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from cfm_core import CFMLoss, FlowMap, LossRecipe
from cfm_core.cli import ConfigError
from cfm_core.cli.config import config_from_dict, config_to_dict, parse_config
from cfm_core.method import MethodConfig, build_cfm

from .conftest import SmoothNet


@pytest.mark.parametrize(
    ("field", "value"),
    [("instantaneous_ratio", -0.1), ("fd_step", 1.0), ("adaptive_c", 0.0), ("cond_dropout", 1.0), ("ot_block", 1)],
)
def test_the_recipes_errors_become_config_errors_naming_the_option(field, value):
    with pytest.raises(ConfigError, match=f"^method.{field}"):
        MethodConfig(**{field: value})


def test_ddim_with_the_model_target_is_refused():
    with pytest.raises(ConfigError, match="method.target_field: 'model' diverges with the ddim formulation"):
        MethodConfig(formulation="ddim", target_field="model")
    MethodConfig(formulation="edm", target_field="model")


def test_flags_and_stored_configs_are_unchanged():
    argv = ["--instantaneous-ratio", "0.75", "--logit-normal", "0.1", "2.0", "--formulation", "edm"]
    cfg = parse_config(MethodConfig, argv, prog="test")
    assert (cfg.instantaneous_ratio, cfg.logit_normal, cfg.formulation) == (0.75, (0.1, 2.0), "edm")
    stored = config_to_dict(cfg)
    assert set(stored) == {
        "formulation",
        "formulation_options",
        "teacher",
        "student_init",
        *(f.name for f in dataclasses.fields(LossRecipe)),
    }
    assert config_from_dict(MethodConfig, stored) == cfg
    assert cfg.recipe() == LossRecipe(instantaneous_ratio=0.75, logit_normal=(0.1, 2.0))


def test_build_cfm_builds_the_model_and_its_loss():
    method = MethodConfig(formulation="x1", formulation_options={"target_clamp": 0.05}, cond_dropout=0.2, adaptive_p=1)
    loss_fn = build_cfm(SmoothNet(), method, null_cond=torch.tensor(0.0))
    assert isinstance(loss_fn, CFMLoss) and isinstance(loss_fn.model, FlowMap)
    assert loss_fn.recipe == method.recipe() and loss_fn.adaptive_p == 1.0
    assert loss_fn.model.formulation.config()["target_clamp"] == 0.05
    assert all(key.startswith("net.") for key in loss_fn.model.state_dict())
    unconditional = build_cfm(SmoothNet(), method)  # no null condition: nothing to drop to
    assert unconditional.recipe.cond_dropout == 0.0 and unconditional.adaptive_p == 1.0


def test_the_formulation_leads_the_method_options():
    """The command line lists ``--method.*`` in field order: the formulation first, then the recipe."""
    names = [f.name for f in dataclasses.fields(MethodConfig)]
    assert names[:2] == ["formulation", "formulation_options"]
    assert names[2:][: len(dataclasses.fields(LossRecipe))] == [f.name for f in dataclasses.fields(LossRecipe)]


def test_the_epsilon_prediction_is_a_formulation_option_that_round_trips():
    argv = ["--formulation", "ddim", "--formulation-options", "prediction", "epsilon", "beta_max", "10"]
    cfg = parse_config(MethodConfig, argv, prog="test")
    assert cfg.formulation_options == {"prediction": "epsilon", "beta_max": 10.0}
    assert config_from_dict(MethodConfig, config_to_dict(cfg)) == cfg
    loss_fn = build_cfm(SmoothNet(), cfg)
    assert loss_fn.model.formulation.prediction == "epsilon" and loss_fn.adaptive_p == 0.0
    with pytest.raises(ConfigError, match="method.formulation_options: ddim: prediction must be one of"):
        parse_config(MethodConfig, ["--formulation", "ddim", "--formulation-options", "prediction", "v"], prog="test")
    with pytest.raises(ConfigError, match="method.formulation_options: edm: sigma_data must be a number, got 'abc'"):
        parse_config(MethodConfig, ["--formulation", "edm", "--formulation-options", "sigma_data", "abc"], prog="test")
