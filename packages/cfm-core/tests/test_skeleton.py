"""The app skeleton: the shared option groups, the time-feature rule and the command glue."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from cfm_core.cli import ConfigError, parse_config
from cfm_core.cli.skeleton import EvalOptions, SampleOptions, from_argv, load_run
from cfm_core.nn import time_features_for


@dataclass(kw_only=True)
class MySample(SampleOptions):
    out: str = "x.npy"


@dataclass(kw_only=True)
class MyEval(EvalOptions):
    cfm_steps: tuple[int, ...] = (1, 3)


def test_sample_options_parse_and_check():
    cfg = parse_config(MySample, ["--checkpoint", "c", "--steps", "4", "--sampler", "heun", "--no-ema"], prog="t")
    assert (cfg.checkpoint, cfg.steps, cfg.sampler, cfg.ema, cfg.seed, cfg.out) == ("c", 4, "heun", False, 0, "x.npy")
    with pytest.raises(ConfigError, match="--steps must be a positive integer, got 0"):
        MySample(checkpoint="c", steps=0)


def test_eval_options_defaults_checks_and_output_folder():
    cfg = parse_config(MyEval, ["--checkpoint", "run"], prog="t")
    assert cfg.cfm_steps == (1, 3) and cfg.baseline is None and cfg.seed == 1234
    checkpoint = SimpleNamespace(path=Path("runs/a/step-0000010"))
    assert cfg.out_dir(checkpoint) == Path("runs/a/eval")
    assert MyEval(checkpoint="c", out="elsewhere").out_dir(checkpoint) == Path("elsewhere")
    with pytest.raises(ConfigError, match="needs at least one jump count"):
        MyEval(checkpoint="c", cfm_steps=())
    with pytest.raises(ConfigError, match=r"--baseline-steps must be positive integers, got \[2, 0\]"):
        MyEval(checkpoint="c", baseline_steps=(2, 0))


def test_from_argv_parses_then_runs():
    seen = []
    run = from_argv(seen.append, MySample, "cfm my sample")
    assert run(["--checkpoint", "c"]) == 0
    assert seen == [MySample(checkpoint="c")]


def test_load_run_names_the_option(tmp_path):
    with pytest.raises(ConfigError, match="--baseline: checkpoint or run directory not found"):
        load_run(tmp_path / "missing", lambda config: None, "toy", MySample, option="--baseline")


@pytest.mark.parametrize(
    ("formulation", "choice", "features"),
    [
        ("edm", "auto", "fourier"),
        ("u", "auto", "sinusoidal"),
        ("ddim", "auto", "sinusoidal"),
        ("edm", "sinusoidal", "sinusoidal"),
    ],
)
def test_one_time_feature_rule(formulation, choice, features):
    assert time_features_for(formulation, choice) == features


def test_unknown_time_features_are_refused():
    with pytest.raises(ValueError, match="unknown time features 'gaussian'"):
        time_features_for("u", "gaussian")
