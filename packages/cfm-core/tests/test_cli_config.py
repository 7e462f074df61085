"""``require_positive`` (the option check every app's config uses) and the help text of ``parse_config``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from cfm_core.cli import ConfigError, require_positive
from cfm_core.cli.config import parse_config, reflow_help


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


def test_reflow_joins_source_lines_and_keeps_paragraphs_and_list_items():
    text = "First line ends\n    3 octaves here and\n    0.5 there.\n\n    - item one\n      goes on\n    - item two"
    assert reflow_help(text) == "First line ends 3 octaves here and 0.5 there.\n\n- item one goes on\n- item two"


@dataclass
class _Documented:
    width: int = 3
    """A help text written over
    3 source lines, the last
    0.5 of it on its own line."""


def test_help_shows_a_multi_line_field_docstring_as_one_paragraph(capsys):
    with pytest.raises(SystemExit):
        parse_config(_Documented, ["--help"], prog="demo")
    out = capsys.readouterr().out
    assert "A help text written over 3 source lines, the last 0.5 of it" in " ".join(out.replace("│", " ").split())
    first = next(line for line in out.splitlines() if "A help text" in line)
    assert "3 source lines" in first, "the docstring's own line breaks survived into --help"


@dataclass
class _Inner:
    scale: float = 1.0
    """A float of a nested group."""


@dataclass
class _Checked:
    weights: tuple[float, ...] = (1.0,)
    """Floats."""
    count: int = 1
    """A positive count."""
    inner: _Inner = dataclasses.field(default_factory=_Inner)

    def __post_init__(self) -> None:
        require_positive({"--count": self.count}, integer=True)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--inner.scale", "nan"], "--inner.scale must be a finite number, got nan"),
        (["--weights", "1", "inf"], "--weights must be a finite number, got inf"),
        (["--count", "0"], "--count must be a positive integer, got 0"),  # raised inside the parser
        (["--count", "two"], "Error parsing --count: invalid literal for int() with base 10: 'two'"),
        (["--bogus", "1"], "Unrecognized options: --bogus, 1"),
    ],
)
def test_every_refused_command_line_is_one_config_error(argv, message, capsys):
    with pytest.raises(ConfigError) as caught:
        parse_config(_Checked, argv, prog="demo")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert capsys.readouterr().err == ""  # the parser's own box is not printed as well


def test_a_preset_must_come_first():
    presets = {"small": _Checked(count=2)}
    assert parse_config(_Checked, ["--preset", "small", "--weights", "2"], prog="demo", presets=presets).count == 2
    with pytest.raises(ConfigError, match="--preset must come first, before the other options .choose one of small"):
        parse_config(_Checked, ["--weights", "2", "--preset", "small"], prog="demo", presets=presets)
