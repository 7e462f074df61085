"""Image data: folders, webdataset shards, built-in offline datasets, and step-indexed batches.

Every source yields ``(image, label)`` with ``image`` a float tensor ``(C, H, W)`` in ``[-1, 1]``
and ``label`` an ``int`` (or ``None`` for unlabelled data); :func:`step_batches` turns any of them
into the trainer's ``data(step) -> (images, labels or None)``.
"""

from cfm_image.data.batching import collate_images, step_batches
from cfm_image.data.builtin import BUILTIN_DATASETS, load_builtin
from cfm_image.data.folder import IMAGE_EXTENSIONS, ImageFolderDataset
from cfm_image.data.imaging import UnreadableImageWarning
from cfm_image.data.shards import ShardStream, expand_shards, write_shards
from cfm_image.data.tensor_dataset import ImageTensorDataset

__all__ = [
    "BUILTIN_DATASETS",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "ImageTensorDataset",
    "ShardStream",
    "UnreadableImageWarning",
    "collate_images",
    "expand_shards",
    "load_builtin",
    "step_batches",
    "write_shards",
]
