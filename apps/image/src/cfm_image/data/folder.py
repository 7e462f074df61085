"""A folder of PNG/JPEG images of any size as a dataset of ``resolution``-square tensors."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cfm_image.data.imaging import (
    UNREADABLE_IMAGE_ERRORS,
    check_channels,
    check_resolution,
    load_image_tensor,
    warn_unreadable,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_PROGRESS_FROM = 2000  # folders with at least this many files show a progress bar while scanning


class ImageFolderDataset(Dataset):
    """Every image under ``root`` (recursively), resized on the shorter side and center-cropped
    to ``resolution``, as ``(image, label)`` with ``image`` a float tensor ``(C, H, W)`` in
    ``[-1, 1]``.

    With ``labels=True`` the first sub-folder below ``root`` names the class (``root/cat/x.png`` is
    class ``"cat"``); ``class_names`` are the sorted folder names and ``label`` their index.
    Otherwise ``label`` is ``None`` (batch with :func:`cfm_image.data.collate_images`).

    A file that is not a readable image is skipped with an :class:`UnreadableImageWarning` and
    counted in :attr:`skipped` (the paths in :attr:`skipped_files`): at construction when its
    header is unreadable, at loading when its data is (then the next readable index is returned,
    so a long run never stops on a bad file). Counts made inside DataLoader worker processes stay
    in those processes.

    Args:
        root: the folder.
        resolution: side of the square output.
        channels: 3 (RGB) or 1 (grayscale).
        labels: take class labels from the sub-folder names.
        extensions: file name endings (case-insensitive) that count as images.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no readable image in ``root``, or ``labels=True`` with images outside class
            sub-folders.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        resolution: int,
        *,
        channels: int = 3,
        labels: bool = False,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist or is not a folder")
        self.resolution = check_resolution(resolution)
        check_channels(channels)
        self.channels = channels
        self.skipped_files: list[str] = []
        candidates = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in extensions and p.is_file())
        self.files = [
            p
            for p in tqdm(
                candidates,
                desc=f"scanning {self.root}",
                leave=False,
                disable=len(candidates) < _PROGRESS_FROM,
            )
            if self._readable(p)
        ]
        if not self.files:
            raise ValueError(
                f"no readable image ({', '.join(extensions)}) in {self.root} "
                f"({len(self.skipped_files)} unreadable files skipped)"
            )
        self.class_names: list[str] | None = None
        self.labels: list[int] | None = None
        if labels:
            self._assign_labels()

    def _readable(self, path: Path) -> bool:
        """Whether ``path`` has a readable image header; if not, warn and count it."""
        try:
            with Image.open(path):
                return True
        except UNREADABLE_IMAGE_ERRORS as error:
            self._skip(path, error)
            return False

    def _skip(self, path: Path, error: BaseException) -> None:
        if str(path) not in self.skipped_files:
            self.skipped_files.append(str(path))
            warn_unreadable(str(path), error)

    def _assign_labels(self) -> None:
        parts = [p.relative_to(self.root).parts for p in self.files]
        loose = [str(self.files[i]) for i, part in enumerate(parts) if len(part) == 1]
        if loose:
            raise ValueError(
                f"labels=True needs every image inside a class sub-folder of {self.root}; "
                f"{len(loose)} images lie directly in it (e.g. {loose[0]})"
            )
        self.class_names = sorted({part[0] for part in parts})
        index = {name: k for k, name in enumerate(self.class_names)}
        self.labels = [index[part[0]] for part in parts]

    @property
    def skipped(self) -> int:
        """How many unreadable files were skipped so far."""
        return len(self.skipped_files)

    @property
    def num_classes(self) -> int | None:
        """The number of classes, or ``None`` without labels."""
        return None if self.class_names is None else len(self.class_names)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int | None]:
        """Item ``index``, or (when its file turns out unreadable) the next readable one."""
        if not -len(self.files) <= index < len(self.files):
            raise IndexError(f"index {index} out of range for {len(self.files)} images")
        for offset in range(len(self.files)):
            item = self.try_load((index + offset) % len(self.files))
            if item is not None:
                return item
        raise ValueError(f"no image in {self.root} could be decoded ({self.skipped} unreadable files)")

    def try_load(self, index: int) -> tuple[Tensor, int | None] | None:
        """Item ``index``, or ``None`` (warned and counted) when its file cannot be decoded."""
        path = self.files[index]
        try:
            image = load_image_tensor(path, self.resolution, self.channels)
        except UNREADABLE_IMAGE_ERRORS as error:
            self._skip(path, error)
            return None
        return image, None if self.labels is None else self.labels[index]
