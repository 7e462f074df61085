"""Atomic file output shared by every app: write a temporary file beside the target, then rename it.

A crash or an error never leaves a half-written file at the target path, and new files get the
permissions ``open()`` would give them (``0o666`` less the umask).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it becomes ``path``, when it
    raises it is removed. Missing folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary binary file beside ``path``, then move it onto ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        write(file)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) atomically to ``path``."""
    payload = data.encode() if isinstance(data, str) else data
    return write_atomically(path, lambda file: file.write(payload))


def save_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically to ``path``."""
    return write_bytes_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
