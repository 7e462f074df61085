"""The metric curves: valid, non-blank PNGs of a sensible size; clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from cfm_core.plotting import save_curves, save_quality_vs_nfe


def test_curves(tmp_path, check_png):
    curves = {
        "cfm": ([1, 2, 4], [0.3, 0.1, 0.05]),
        "baseline": (np.array([8, 16, 64]), [0.2, 0.1, 0.04]),
    }
    path = save_curves(
        curves, tmp_path / "quality.png", "NFE", "energy distance", logx=True, title="quality vs NFE", logy=True
    )
    check_png(path, 300, 200)


def test_curves_on_a_symmetric_log_axis_take_values_at_and_below_zero(tmp_path, check_png):
    curves = {"cfm": ([1, 2, 4], [0.3, -2e-4, 0.0]), "baseline": ([8, 64], [0.2, -1e-4])}
    path = save_curves(curves, tmp_path / "floor.png", "NFE", "energy distance", logx=True, symlog_y=1e-3)
    check_png(path, 300, 200)
    with pytest.raises(ValueError, match="symlog_y must be positive and excludes logy"):
        save_curves(curves, tmp_path / "x.png", "x", "y", logy=True, symlog_y=1e-3)
    with pytest.raises(ValueError, match="symlog_y must be positive"):
        save_curves(curves, tmp_path / "x.png", "x", "y", symlog_y=0.0)


def test_existing_file_is_replaced(tmp_path, check_png):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    save_curves({"a": ([0, 1], [1, 0])}, target, "x", "y")
    check_png(target, 300, 200)


def test_curves_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="curve 'a': xs and ys need the same"):
        save_curves({"a": ([1, 2, 3], [1, 2])}, tmp_path / "x.png", "x", "y")
    with pytest.raises(ValueError, match="logx needs positive x"):
        save_curves({"a": ([0, 1], [1, 2])}, tmp_path / "x.png", "x", "y", logx=True)
    with pytest.raises(ValueError, match=r"xs of curve 'a' must have shape \(K,\)"):
        save_curves({"a": (np.zeros((2, 2)), [1, 2])}, tmp_path / "x.png", "x", "y")
    with pytest.raises(ValueError, match="must be a pair"):
        save_curves({"a": [1, 2, 3]}, tmp_path / "x.png", "x", "y")


def test_quality_vs_nfe_from_sweep_rows(tmp_path, check_png):
    rows = [
        {"label": "cfm", "nfe": 1, "m": 0.3},
        {"label": "cfm", "nfe": 2, "m": None},
        {"label": "baseline", "nfe": 4, "m": float("nan")},
        {"label": "baseline", "nfe": 8, "m": 0.1},
        {"label": "baseline", "nfe": 16, "m": -0.01},  # left out on a log axis
    ]
    check_png(save_quality_vs_nfe(rows, "m", tmp_path / "log.png", ylabel="m", logy=True), 300, 200)
    check_png(save_quality_vs_nfe(rows, "m", tmp_path / "auto.png", ylabel="m", logy="auto"), 300, 200)
    assert save_quality_vs_nfe(rows[1:3], "m", tmp_path / "none.png", ylabel="m") is None
    assert not (tmp_path / "none.png").exists()
