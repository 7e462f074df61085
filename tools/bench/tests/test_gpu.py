"""tools/bench/gpu.py: without CUDA it says so and measures nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import gpu  # noqa: E402


def test_without_cuda_it_prints_skipped(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu, "measure", lambda *a: pytest.fail("measured without CUDA"))
    assert gpu.main(["--record"]) == 0
    assert capsys.readouterr().out == "skipped: no CUDA\n"


def test_every_preset_and_setting_is_a_valid_train_command(capsys):
    """Each command the benchmark runs parses: with ``--train.steps 0`` the only error is the step
    count, which the config checks after every option was recognised."""
    from cfm_core.cli import main

    for command in gpu.PRESETS.values():
        for method in gpu.METHODS.values():
            for setting in gpu.SETTINGS.values():
                try:
                    code = main([*command, *method, *setting, "--train.steps", "0"])
                except SystemExit as exit_info:
                    code = exit_info.code
                error = " ".join(capsys.readouterr().err.split())
                assert code == 2, error
                assert "steps: must be a positive integer" in error, (command, method, setting, error)


def test_the_timing_window_must_fit_twice():
    with pytest.raises(SystemExit):
        gpu.parse_args(["--steps", "10", "--window", "10"])
