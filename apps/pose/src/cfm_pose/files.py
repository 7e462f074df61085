"""Reading ``.npz`` archives with errors that name the file (atomic writing is ``cfm_core.io``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


def load_npz(path: Path, what: str, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive (all, or those of ``keys`` it has), read without pickle;
    ``ValueError`` naming the file if it is not one or an array cannot be read."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npz {what} ({error})") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a {what} must be an .npz archive, found a single array")
    with archive:
        wanted = archive.files if keys is None else [k for k in keys if k in archive.files]
        try:
            return {key: archive[key] for key in wanted}
        except (OSError, ValueError, EOFError) as error:
            raise ValueError(f"{path}: not a readable .npz {what} ({error})") from error
