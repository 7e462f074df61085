"""Set-up of every test session in the workspace: torch on one CPU thread per process unless
OMP_NUM_THREADS or MKL_NUM_THREADS say otherwise (see :mod:`cfm_core.threads`), and the fixtures
the packages' tests share."""

from __future__ import annotations

import numpy as np
import pytest
from cfm_core.threads import configure_threads
from PIL import Image

configure_threads()

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, min_width, min_height):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert min_width <= width <= 4000 and min_height <= height <= 4000
    assert pixels.std() > 5  # something was drawn on the white background
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    return width, height


@pytest.fixture
def check_png():
    """``check_png(path, min_width, min_height) -> (width, height)``: asserts that ``path`` is a
    valid PNG of a sensible size with something drawn on it, and that no temporary file of its
    atomic write is left beside it."""
    return _check_png
