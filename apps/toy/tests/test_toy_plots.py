"""The toy's scatter panels: valid, non-blank PNGs of a sensible size; clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cfm_toy.plots import save_scatter_panels


def test_scatter_panels_row_and_grid(tmp_path, check_png):
    g = torch.Generator().manual_seed(0)
    panels = {f"{k} steps": torch.randn(500, 2, generator=g) for k in (1, 2, 4)}
    panels["baseline"] = np.random.default_rng(0).normal(size=(500, 2))
    row = save_scatter_panels(panels, tmp_path / "row.png", title="samples")
    width, height = check_png(row, 800, 200)
    assert width > 2.5 * height  # four panels side by side
    panels["data"] = [[0.0, 0.0], [1.0, 1.0]]
    grid = save_scatter_panels(panels, tmp_path / "sub" / "grid.png", lims=(-3, 3), ncols=3)
    width, height = check_png(grid, 600, 400)
    assert width < 2 * height  # two rows of three


def test_scatter_panels_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"panel 'a' must have shape \(N, 2\)"):
        save_scatter_panels({"a": np.zeros((10, 3))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="panel 'a' contains NaN"):
        save_scatter_panels({"a": np.full((10, 2), np.nan)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="panels is empty"):
        save_scatter_panels({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="lo < hi"):
        save_scatter_panels({"a": np.zeros((3, 2))}, tmp_path / "x.png", lims=(1, -1))
    with pytest.raises(ValueError, match="must end in .png"):
        save_scatter_panels({"a": np.zeros((3, 2))}, tmp_path / "x.jpg")
    assert list(tmp_path.iterdir()) == []
