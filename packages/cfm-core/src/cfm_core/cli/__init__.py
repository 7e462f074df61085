"""The ``cfm`` command: ``cfm [--threads N] <app> <command> [options]``, apps found through entry points."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from cfm_core.cli.app import ENTRY_POINT_GROUP, App, Command, ConfigError, app_version, lazy
from cfm_core.cli.config import config_from_dict, config_to_dict, parse_config, require_positive

__all__ = [
    "App",
    "Command",
    "ConfigError",
    "app_version",
    "lazy",
    "config_from_dict",
    "config_to_dict",
    "discover_apps",
    "main",
    "parse_config",
    "require_positive",
]


def discover_apps() -> dict[str, App]:
    """Every installed app registered under the ``cfm.apps`` entry-point group, by name."""
    apps: dict[str, App] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            app = ep.load()
        except Exception as err:  # a broken app must not take the others down
            print(f"warning: could not load cfm app {ep.name!r} ({ep.value}): {err}", file=sys.stderr)
            continue
        if not isinstance(app, App):
            print(f"warning: entry point {ep.name!r} is not a cfm_core.cli.App", file=sys.stderr)
            continue
        apps[app.name] = app
    return dict(sorted(apps.items()))


def _usage(apps: dict[str, App]) -> str:
    lines = [
        "usage: cfm [--threads N] <app> <command> [options]",
        "",
        "Few-step generation with Cumulative Flow Maps. Every command takes --help.",
        "",
        "--threads N  torch's CPU threads (default: OMP_NUM_THREADS or MKL_NUM_THREADS when set,",
        "             else 1: more threads only pay on a CPU that no other work shares)",
        "",
        "apps and commands:",
    ]
    for app in apps.values():
        lines.append(f"  {app.name:<10} {app.help}")
        for cmd in app.commands:
            lines.append(f"      {cmd.name:<10} {cmd.help}")
    if not apps:
        lines.append("  (none installed)")
    return "\n".join(lines)


def _app_usage(app: App) -> str:
    lines = [f"usage: cfm {app.name} <command> [options]", "", app.help, "", "commands:"]
    lines += [f"  {c.name:<10} {c.help}" for c in app.commands] or ["  (no commands yet)"]
    return "\n".join(lines)


def _threads_option(argv: list[str]) -> tuple[int | None, list[str]]:
    """``--threads N`` (or ``--threads=N``) in front of the app name: the count and the rest."""
    if not argv or not argv[0].startswith("--threads"):
        return None, argv
    if argv[0] == "--threads":
        value, rest = (argv[1] if len(argv) > 1 else ""), argv[2:]
    elif argv[0].startswith("--threads="):
        value, rest = argv[0].partition("=")[2], argv[1:]
    else:
        raise ConfigError(f"unknown option {argv[0]!r}")
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--threads needs a positive integer, got {value!r}")
    return int(value), rest


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cfm`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        threads, argv = _threads_option(argv)
    except ConfigError as err:
        print(f"cfm: error: {err}", file=sys.stderr)
        return 2
    apps = discover_apps()
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(apps))
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from cfm_core import __version__

        print(f"cfm {__version__}")
        return 0
    app = apps.get(argv[0])
    if app is None:
        print(f"cfm: unknown app {argv[0]!r}; installed: {', '.join(apps) or 'none'}", file=sys.stderr)
        return 2
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(_app_usage(app))
        return 0 if len(argv) >= 2 else 2
    command = app.command(argv[1])
    if command is None:
        names = ", ".join(c.name for c in app.commands) or "none"
        print(f"cfm {app.name}: unknown command {argv[1]!r}; choose one of {names}", file=sys.stderr)
        return 2
    from cfm_core.threads import configure_threads

    configure_threads(threads)
    try:
        code = command.run(argv[2:])
    except ConfigError as err:
        print(f"cfm {app.name} {command.name}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file system refusal the command did not word itself
        where = f"{err.filename}: " if err.filename else ""
        print(f"cfm {app.name} {command.name}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
