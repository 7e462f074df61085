"""File output shared by every app: destinations checked before any work, atomic writes.

:func:`check_output_file` and :func:`check_output_dir` refuse a destination before a command does
any work: one that exists as the wrong kind (a folder where a file goes, or the reverse), whose
suffix the command does not write, or whose folder cannot be written. Files are written to a
temporary file beside the target and renamed onto it, so a crash, an error or a full disk never
leaves a half-written file at the target path (an old file there stays whole); new files get the
permissions ``open()`` would give them (``0o666`` less the umask). A write that fails with an
``OSError`` (read-only, no space, no permission) raises :class:`OutputError`, one line naming the
target and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from cfm_core.cli.app import ConfigError


class OutputError(ConfigError):
    """An output cannot be written: the destination is refused, or the write failed."""


def describe_os_error(err: OSError) -> str:
    """The cause of an ``OSError`` in words (``No space left on device``), without the file name."""
    return err.strerror or str(err) or type(err).__name__


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _check_writable_folder(path: Path, option: str) -> None:
    """``path`` (a folder that will hold the output, maybe not yet created) can be created and written."""
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise OutputError(f"{option}: cannot create the folder {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        cause = "a read-only file system" if _read_only(existing) else "permission denied"
        raise OutputError(f"{option}: cannot write into {existing} ({cause})")


def _no_space_left(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_output_file(path: str | os.PathLike, option: str, suffixes: tuple[str, ...] | None = None) -> Path:
    """Refuse (:class:`OutputError` naming ``option``) an output file ``path`` before any work: an
    existing folder, a suffix outside ``suffixes`` (lowercase, with the dot; None: any), or a
    folder that cannot be created or written. Returns ``path`` as a Path."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise OutputError(f"{option}: {path} must end in {' or '.join(suffixes)} (the format written)")
    if path.is_dir():
        raise OutputError(f"{option}: {path} is a folder; give a file name")
    _check_writable_folder(path.parent, option)
    return path


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Refuse (:class:`OutputError` naming ``option``) an output folder ``path`` before any work:
    an existing file, or a place where it cannot be created or written. Returns it as a Path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option}: {path} is a file; give a folder")
    _check_writable_folder(path, option)
    return path


@contextlib.contextmanager
def reported_as(path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` inside the block (which writes ``path``) into an :class:`OutputError`:
    ``cannot write {path}: {cause}``."""
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(f"cannot write {path}: {describe_os_error(err)}") from None


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it becomes ``path``, when it
    raises it is removed. Missing folders are created; an ``OSError`` becomes :class:`OutputError`."""
    path = Path(path)
    with reported_as(path):
        if path.is_dir():
            raise OutputError(f"cannot write {path}: it is a folder")
        existing = _nearest_existing(path.parent)
        if not existing.is_dir():
            raise OutputError(f"cannot write {path}: {existing} is a file, not a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.chmod(tmp, _default_mode())
            os.replace(tmp, path)
        except OSError as err:
            full = err.errno is None and _no_space_left(tmp.parent)  # numpy's tofile gives no errno
            tmp.unlink(missing_ok=True)
            if full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from err
            raise
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
