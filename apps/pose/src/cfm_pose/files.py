"""Reading ``.npz`` archives with errors that name the file (atomic writing is ``cfm_core.io``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive; ``ValueError`` naming the file if it is not one."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npz {what} ({error})") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a {what} must be an .npz archive, found a single array")
    with archive:
        return {key: archive[key] for key in archive.files}
