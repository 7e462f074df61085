"""Memory checks before large allocations: a size the machine cannot hold is refused with the numbers."""

from __future__ import annotations

import os

from cfm_core.cli.app import ConfigError

GIB = 1024**3


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable`` of ``/proc/meminfo``, else
    the physical memory), or None where neither is known."""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def require_memory(needed: int, what: str, option: str) -> None:
    """Raise :class:`ConfigError` naming ``option`` when ``needed`` bytes (an estimate of ``what``,
    made before allocating it) exceed the available memory."""
    available = available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"{option}: {what} needs about {needed / GIB:,.1f} GiB of memory, "
            f"{available / GIB:,.1f} GiB are available; choose a smaller value"
        )
