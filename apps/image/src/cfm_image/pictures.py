"""PNG output of generated images: grids, one file per image, and titled comparison panels.

Every file is written atomically (a temporary file in the same folder, then renamed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from cfm_core.io import atomic_path
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from cfm_image.data.imaging import tensor_to_uint8


def displayable(images: Tensor) -> Tensor:
    """``images`` on the CPU, clamped to ``[-1, 1]``, with NaN shown as grey and inf as
    black/white (so that a diverged run still draws)."""
    return torch.nan_to_num(images.detach().float().cpu(), nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1, 1)


def image_grid(images: Tensor, nrow: int | None = None, padding: int = 1) -> Tensor:
    """Images ``(N, C, H, W)`` tiled ``nrow`` per row (default about ``sqrt(N)``) with
    ``padding`` pixels of white between them: one image ``(C, H', W')``."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch (N, C, H, W), got {tuple(images.shape)}")
    count, channels, height, width = images.shape
    ncol = nrow or math.ceil(math.sqrt(count))
    rows = math.ceil(count / ncol)
    grid = torch.ones(channels, rows * (height + padding) + padding, ncol * (width + padding) + padding)
    for k, image in enumerate(displayable(images)):
        top = padding + (k // ncol) * (height + padding)
        left = padding + (k % ncol) * (width + padding)
        grid[:, top : top + height, left : left + width] = image
    return grid


def save_png(image: Tensor, path: str | os.PathLike) -> Path:
    """One image ``(C, H, W)`` in ``[-1, 1]`` as an 8-bit PNG."""
    pil = Image.fromarray(tensor_to_uint8(displayable(image)))
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG")
    return Path(path)


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Images ``(N, C, H, W)`` as one PNG grid, ``nrow`` per row."""
    return save_png(image_grid(images, nrow), path)


def save_individual(images: Tensor, folder: str | os.PathLike) -> list[Path]:
    """One PNG per image: ``folder/00000.png``, ``00001.png``, ..."""
    return [save_png(image, Path(folder) / f"{k:05d}.png") for k, image in enumerate(images)]


def save_panels(
    panels: Mapping[str, Tensor], path: str | os.PathLike, nrow: int | None = None, title: str | None = None
) -> Path:
    """A figure with one titled grid per entry of ``panels`` (name -> images), side by side."""
    if not panels:
        raise ValueError("no panels to draw")
    grids = [image_grid(images, nrow) for images in panels.values()]
    ncols = min(4, len(grids))
    nrows = math.ceil(len(grids) / ncols)
    aspect = max(g.shape[1] / g.shape[2] for g in grids)
    fig = Figure(figsize=(3.2 * ncols, (3.2 * aspect + 0.4) * nrows + (0.4 if title else 0)))
    for k, (name, grid) in enumerate(zip(panels, grids, strict=True)):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        pixels = grid.add(1).div(2).permute(1, 2, 0).numpy()
        if pixels.shape[2] == 1:
            ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(pixels, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(path)
