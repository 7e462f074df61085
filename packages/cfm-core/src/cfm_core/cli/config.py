"""One config system for every app: typed dataclasses, named presets and command-line overrides.

Parsing the command line needs tyro, the ``cli`` extra of cfm-core (``pip install 'cfm-core[cli]'``);
the rest of this module (configs to and from JSON, option checks) does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
import sys
import textwrap
import typing
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, TypeVar

from cfm_core.cli.app import ConfigError

T = TypeVar("T")


def require_positive(options: Mapping[str, float | None], *, integer: bool = False) -> None:
    """Raise :class:`ConfigError` naming the first option whose value is not positive.

    ``options`` maps each option as the user types it (``"--net.width"``) to its value; ``None``
    (an unset optional option) is skipped. With ``integer`` the value must also be an integer
    (``True``/``False`` are refused)."""
    for option, value in options.items():
        if value is None:
            continue
        if integer and (isinstance(value, bool) or not float(value).is_integer() or value < 1):
            raise ConfigError(f"{option} must be a positive integer, got {value!r}")
        if not value > 0:
            raise ConfigError(f"{option} must be positive, got {value!r}")


def _tyro() -> ModuleType:
    """tyro, or an ImportError saying how to install it."""
    try:
        import tyro
    except ImportError:
        raise ImportError(
            "parsing cfm command lines needs tyro, the 'cli' extra of cfm-core: pip install 'cfm-core[cli]'"
        ) from None
    return tyro


def parse_config(
    config_type: type[T],
    argv: Sequence[str],
    *,
    prog: str,
    description: str | None = None,
    presets: Mapping[str, T] | None = None,
) -> T:
    """Parse ``argv`` into ``config_type``; ``--preset NAME`` (first) picks the defaults.

    ``--help`` lists every option with its default (the preset's, when one is chosen).
    Validation errors raised by the dataclass (``__post_init__``) become :class:`ConfigError`.
    """
    tyro = _tyro()
    argv = list(argv)
    default = None
    if presets:
        names = ", ".join(sorted(presets))
        description = f"{description or config_type.__doc__ or ''}\n\nPresets (--preset NAME, first): {names}."
        if argv[:1] == ["--preset"] or (argv and argv[0].startswith("--preset=")):
            name = argv[1] if argv[0] == "--preset" and len(argv) > 1 else argv[0].partition("=")[2]
            argv = argv[2:] if argv[0] == "--preset" else argv[1:]
            if name not in presets:
                raise ConfigError(f"unknown preset {name!r}; choose one of {names}")
            default = presets[name]
        late = next((arg for arg in argv if arg == "--preset" or arg.startswith("--preset=")), None)
        if late is not None:
            raise ConfigError(f"--preset must come first, before the other options (choose one of {names})")
    errors = io.StringIO()
    try:
        with _reflowed_help(), contextlib.redirect_stderr(errors):
            if default is None:
                config = tyro.cli(config_type, args=argv, prog=prog, description=description)
            else:
                config = tyro.cli(config_type, args=argv, prog=prog, description=description, default=default)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None
    except SystemExit as exit_:
        message = _boxed_message(errors.getvalue()) if exit_.code == 2 else None
        if message:
            raise ConfigError(message) from None
        sys.stderr.write(errors.getvalue())
        raise
    sys.stderr.write(errors.getvalue())
    require_finite(config)
    return config


_BOX_EDGES = "│╭╮╰╯─ "
_RULE = set("─-╭╮╰╯ ")


def _boxed_message(text: str) -> str | None:
    """The message of the error tyro prints for a rejected command line (a box on a terminal,
    rules otherwise), as one line: the title, then the text; rules and the help pointer left
    out. None when there is no text."""
    parts = []
    for line in text.splitlines():
        inner = line.strip().strip(_BOX_EDGES).strip()
        if inner and not set(inner) <= _RULE and not inner.startswith("For full helptext"):
            parts.append(inner.rstrip(":"))
    if not parts:
        return None
    title, *rest = parts
    body = " ".join(rest).partition(" Argument helptext")[0]
    if not body or title == "Value error":
        return body or title
    return body if body.startswith(title) else f"{title}: {body}"


def require_finite(config: Any, prefix: str = "--") -> None:
    """Raise :class:`ConfigError` naming the first float option of a (nested) dataclass config
    that is NaN or infinite (``--guidance nan`` would otherwise give NaN outputs)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        option = f"{prefix}{f.name.replace('_', '-')}"
        if dataclasses.is_dataclass(value):
            require_finite(value, f"{option}.")
            continue
        values = value if isinstance(value, (tuple, list)) else (value,)
        for item in values:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{option} must be a finite number, got {item}")


_LIST_ITEM = re.compile(r"[-*•]\s|\d+[.)]\s")


def reflow_help(text: str) -> str:
    """Join the source line breaks of a docstring into paragraphs (blank lines and list items stay)."""
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", textwrap.dedent(text).strip()):
        lines: list[str] = []
        for line in textwrap.dedent(block).splitlines():
            line = line.strip()
            if lines and not _LIST_ITEM.match(line):
                lines[-1] = f"{lines[-1]} {line}"
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


@contextlib.contextmanager
def _reflowed_help() -> Iterator[None]:
    """Let ``--help`` reflow the options' docstrings that span several source lines.

    tyro (1.0.17, the newest) keeps a line break before every line that does not start with a
    letter, and looks before removing the source indentation, so the continuation lines of every
    indented field docstring kept their breaks and ``--help`` printed the source's line breaks
    inside its box. While parsing, tyro's helper is replaced by :func:`reflow_help`; without that
    helper this does nothing.
    """
    strings = getattr(_tyro(), "_strings", None)
    original = getattr(strings, "remove_single_line_breaks", None)
    if original is None:
        yield
        return
    strings.remove_single_line_breaks = reflow_help
    try:
        yield
    finally:
        strings.remove_single_line_breaks = original


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a (nested) dataclass config, for checkpoints and logs."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if hasattr(value, "__fspath__"):
            return str(value)
        return value

    return convert(config)


def config_from_dict(config_type: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a (nested) dataclass config from :func:`config_to_dict` output; unknown keys raise."""
    hints = typing.get_type_hints(config_type)
    names = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{config_type.__name__}: unknown config keys {unknown}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = config_from_dict(hint, value)
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[name] = value
    return config_type(**kwargs)
