"""``FourierPointFeatures``: the dyadic sin/cos point embedding every point backbone shares."""

from __future__ import annotations

import math

import pytest
import torch
from cfm_core.nn import FourierPointFeatures


def test_features_match_the_closed_form_channel_by_channel():
    x = torch.tensor([[0.25, -0.5, 1.0]], dtype=torch.float64)
    out = FourierPointFeatures(3, 2)(x)
    assert out.shape == (1, 3 * (1 + 2 * 2))
    angles = [math.pi * 2**k * v for v in (0.25, -0.5, 1.0) for k in range(2)]  # channel-major
    expected = [0.25, -0.5, 1.0] + [math.sin(a) for a in angles] + [math.cos(a) for a in angles]
    torch.testing.assert_close(out[0], torch.tensor(expected, dtype=torch.float64))


def test_zero_levels_is_the_identity_and_leading_axes_broadcast():
    x = torch.randn(4, 5, 2)
    assert FourierPointFeatures(2, 0)(x) is x
    assert FourierPointFeatures(2, 3)(x).shape == (4, 5, 14)
    assert FourierPointFeatures(2, 3).out_features == 14


def test_features_keep_the_input_dtype():
    assert FourierPointFeatures(2, 2)(torch.randn(3, 2, dtype=torch.float64)).dtype == torch.float64


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="channels"):
        FourierPointFeatures(0, 2)
    with pytest.raises(ValueError, match="3 channels"):
        FourierPointFeatures(3, 2)(torch.randn(4, 2))
