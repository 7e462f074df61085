"""``require_positive``: the option check every app's config uses."""

from __future__ import annotations

import pytest
from cfm_core.cli import ConfigError, require_positive


def test_positive_values_and_unset_options_pass():
    require_positive({"--steps": 3, "--lr": 1e-3, "--batch-size": None})
    require_positive({"--n": 5, "--nrow": None}, integer=True)


@pytest.mark.parametrize("value", [0, -1, -0.5, float("nan")])
def test_the_first_bad_option_is_named_with_its_value(value):
    with pytest.raises(ConfigError, match=rf"--net\.width must be positive, got {value!r}"):
        require_positive({"--steps": 3, "--net.width": value, "--n": -7})


@pytest.mark.parametrize("value", [0, 2.5, True, float("inf")])
def test_integer_options_refuse_non_integers_and_booleans(value):
    with pytest.raises(ConfigError, match="--n must be a positive integer"):
        require_positive({"--n": value}, integer=True)
