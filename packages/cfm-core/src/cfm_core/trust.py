"""The trust boundary: files and values from elsewhere are data, never code or addresses.

* A weights file that is not safetensors is either the published file (its SHA-256 checked before
  anything reads it) or read only as plain tensors (``torch.load(weights_only=True)``, which
  refuses pickled code).
* A location read from a file (a checkpoint's stored config) is accepted only as a plain local
  path: never a ``pipe:`` command, never a URL. Locations the user types are theirs to choose.

Every refusal is a :class:`~cfm_core.cli.ConfigError` naming the option and the file.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from cfm_core.cli.app import ConfigError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def require_sha256(path: str | os.PathLike, expected: str, option: str, what: str, skip_option: str) -> None:
    """Raise :class:`ConfigError` unless ``path``'s SHA-256 is ``expected`` (read before anything
    else reads the file); the message names ``skip_option``, which accepts another file."""
    try:
        actual = sha256_of(path)
    except OSError as err:
        raise ConfigError(f"{option}: cannot read {path}: {err.strerror or err}") from None
    if actual != expected:
        raise ConfigError(
            f"{option}: {path} is not {what} (SHA-256 {actual[:16]}..., expected {expected[:16]}...); "
            f"use the published file, or pass {skip_option} to read another file as plain tensors"
        )


def load_plain_tensors(path: str | os.PathLike, option: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors, numbers, strings and
    containers only; a file that would run code or build other objects is refused."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError, AttributeError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(f"{option}: {path} is not a plain tensor file (refused: {reason})") from None


def is_plain_local(location: str) -> bool:
    """Whether a data location names local files only: no ``pipe:`` command, no URL, in none of
    its ``::``-joined parts."""
    parts = str(location).split("::")
    return all(not part.startswith("pipe:") and not _URL.match(part) for part in parts)


def require_plain_local(location: str | os.PathLike | None, what: str, source: str | os.PathLike) -> None:
    """Raise :class:`ConfigError` when ``location``, read from the file ``source``, is a ``pipe:``
    command or a URL (None passes): only the command line may name those."""
    if location is not None and not is_plain_local(os.fspath(location)):
        raise ConfigError(
            f"{Path(source)}: the stored {what} {str(location)!r} is not a plain local path; a "
            "command or URL from a file is never run or fetched (give the data on the command line)"
        )
