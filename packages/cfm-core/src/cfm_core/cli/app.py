"""How an application plugs into the ``cfm`` command.

An app is a distribution that exposes an :class:`App` under the entry-point group ``cfm.apps``::

    [project.entry-points."cfm.apps"]
    image = "cfm_image.cli:APP"

Each :class:`Command` receives the remaining command-line arguments and parses them itself,
normally with :func:`parse_config` (typed dataclasses, presets, ``--help`` with every default).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "cfm.apps"


class ConfigError(ValueError):
    """A bad configuration or a missing input file, reported before any work starts."""


@dataclass(frozen=True)
class Command:
    """One ``cfm <app> <name>`` command.

    Args:
        name: the command word (``train``, ``sample``, ``eval``, ``info`` ...).
        help: one line for the listings.
        run: called with the arguments after the command word; returns an exit code or None.
    """

    name: str
    help: str
    run: Callable[[Sequence[str]], int | None]


@dataclass(frozen=True)
class App:
    """An application: a name, a one-line description and its commands."""

    name: str
    help: str
    commands: tuple[Command, ...] = field(default_factory=tuple)

    def command(self, name: str) -> Command | None:
        return next((c for c in self.commands if c.name == name), None)


def lazy(target: str) -> Callable[[Sequence[str]], int | None]:
    """A command body ``"package.module:function"`` imported only when the command runs,
    so that ``cfm --help`` stays fast however heavy an app's imports are."""
    module, _, function = target.partition(":")
    if not module or not function:
        raise ValueError(f"lazy target must look like 'package.module:function', got {target!r}")

    def run(argv: Sequence[str]) -> int | None:
        return getattr(importlib.import_module(module), function)(argv)

    return run


def app_version(name: str) -> str | None:
    """The version of the installed distribution that registers app ``name`` under the ``cfm.apps``
    entry-point group (e.g. cfm-image's for ``"image"``; cfm-core's for the built-in ``"toy"``), or
    None when no installed distribution registers it."""
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        if ep.dist is not None:
            return ep.dist.version
    return None
