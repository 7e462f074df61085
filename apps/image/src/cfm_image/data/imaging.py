"""Decoding, square fitting and tensor conversion of single images (shared by every loader).

Images become float tensors ``(C, H, W)`` in ``[-1, 1]`` with ``C = 1`` (grayscale) or ``3`` (RGB).
An 8-bit value ``v`` maps to ``v / 127.5 - 1`` and back exactly, so packing a folder into PNG shards
is lossless.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import torch
from PIL import Image
from torch import Tensor

CHANNEL_MODES = {1: "L", 3: "RGB"}

# What PIL raises on a file that is not an image, is truncated, or is too large to decode safely.
UNREADABLE_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class UnreadableImageWarning(UserWarning):
    """An image file or shard sample could not be decoded and was skipped."""


def warn_unreadable(source: str, error: BaseException) -> None:
    """Warn that ``source`` was skipped because of ``error``."""
    message = f"skipping unreadable image {source}: {type(error).__name__}: {error}"
    warnings.warn(message, UnreadableImageWarning, stacklevel=3)


def check_channels(channels: int) -> str:
    """The PIL mode for ``channels`` (1 -> ``"L"``, 3 -> ``"RGB"``); anything else raises."""
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    return CHANNEL_MODES[channels]


def check_resolution(resolution: int) -> int:
    """``resolution`` as a positive int, or a ``ValueError``."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    return resolution


def decode_image(source: str | os.PathLike | bytes, channels: int) -> Image.Image:
    """Fully decode an image file (path) or encoded bytes into ``channels`` (1 or 3) channels.

    Raises one of :data:`UNREADABLE_IMAGE_ERRORS` when the data is not a readable image.
    """
    mode = check_channels(channels)
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    with Image.open(stream) as image:
        image.load()
        image = _as_8_bit(image)
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # PIL's route for palettes with transparency; alpha dropped
        return image.convert(mode)


def _as_8_bit(image: Image.Image) -> Image.Image:
    """16-bit grey (``I;16*``, and PNG's ``I``) scaled to 8 bits (``v / 257``, white stays white);
    32-bit integer and float images have no fixed white level and are refused (``ValueError``).
    PIL's own conversion would clip every value above 255, turning most of a 16-bit image white."""
    if image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG"):
        levels = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.round(levels).clip(0, 255).astype(np.uint8), mode="L")
    if image.mode in ("I", "F"):
        raise ValueError(f"{image.mode} images (32-bit pixels) have no fixed white level; save them as 8 or 16 bits")
    return image


def fit_square(image: Image.Image, resolution: int) -> Image.Image:
    """Resize so that the shorter side is ``resolution`` (bicubic, antialiased), then center-crop
    to ``resolution x resolution``."""
    width, height = image.size
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))


def image_to_tensor(image: Image.Image) -> Tensor:
    """An ``L`` or ``RGB`` PIL image as a float32 tensor ``(C, H, W)`` in ``[-1, 1]``."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


def tensor_to_uint8(image: Tensor) -> np.ndarray:
    """A ``(C, H, W)`` tensor in ``[-1, 1]`` as an 8-bit ``(H, W)`` or ``(H, W, 3)`` array."""
    if image.ndim != 3 or image.shape[0] not in CHANNEL_MODES:
        raise ValueError(f"expected an image tensor (C, H, W) with C in (1, 3), got {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise ValueError("image tensor contains NaN or inf")
    array = image.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    array = array.permute(1, 2, 0).cpu().numpy()
    return array[:, :, 0] if array.shape[2] == 1 else array


def encode_png(image: Tensor) -> bytes:
    """A ``(C, H, W)`` tensor in ``[-1, 1]`` as PNG bytes (lossless for 8-bit values)."""
    buffer = io.BytesIO()
    Image.fromarray(tensor_to_uint8(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def load_image_tensor(source: str | os.PathLike | bytes, resolution: int | None, channels: int) -> Tensor:
    """Decode, fit to a ``resolution`` square (``None``: keep the size), scale to ``[-1, 1]``."""
    image = decode_image(source, channels)
    if resolution is not None:
        image = fit_square(image, resolution)
    return image_to_tensor(image)
