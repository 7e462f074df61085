"""``cfm image pack``: a folder of PNG/JPEG images into webdataset ``.tar`` shards for ``cfm image``.

    cfm image pack FOLDER OUT_DIR --resolution 32 --maxcount 1000 [--labels]

Every image is resized on its shorter side and center-cropped to ``--resolution``, stored as a
lossless PNG (``png``) with its class index (``cls``, from the sub-folder name, with ``--labels``),
in a seeded random order so that consecutive samples of a shard are not all of one class. Shards
are ``OUT_DIR/shard-000000.tar`` and on; ``OUT_DIR/meta.json`` records the resolution, channels,
counts and class names. Unreadable files are skipped with a warning and counted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cfm_image.data import ImageFolderDataset, write_shards

SHARD_PATTERN = "shard-%06d.tar"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cfm image pack", description="Pack a folder of PNG/JPEG images into webdataset .tar shards."
    )
    parser.add_argument("folder", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("out_dir", type=Path, help="output folder for the shards (created)")
    parser.add_argument("--resolution", type=int, required=True, help="side of the square images")
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard")
    parser.add_argument("--labels", action="store_true", help="class labels from sub-folder names")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3), help="3 RGB, 1 grey")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample order")
    return parser.parse_args(argv)


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write ``payload`` as JSON through a temporary file in the same folder."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(payload, stream, indent=2)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def pack(
    folder: Path,
    out_dir: Path,
    resolution: int,
    maxcount: int,
    labels: bool,
    channels: int,
    seed: int,
) -> dict:
    """Pack ``folder`` into shards under ``out_dir``; returns the metadata written to meta.json."""
    if out_dir.is_dir() and any(out_dir.glob("shard-*.tar")):
        raise FileExistsError(f"{out_dir} already holds shards; choose an empty output folder")
    dataset = ImageFolderDataset(folder, resolution, channels=channels, labels=labels)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    written = 0

    def readable_items():
        nonlocal written
        for index in tqdm(order.tolist(), desc="packing", unit="img"):
            item = dataset.try_load(index)
            if item is not None:
                written += 1
                yield item

    shards = write_shards(readable_items(), str(out_dir / SHARD_PATTERN), maxcount=maxcount)
    meta = {
        "resolution": resolution,
        "channels": channels,
        "count": written,
        "skipped": dataset.skipped,
        "shards": [Path(s).name for s in shards],
        "class_names": dataset.class_names,
    }
    write_json_atomic(out_dir / "meta.json", meta)
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """The ``cfm image pack`` command (also ``python -m cfm_image.pack_shards``); returns the exit code."""
    args = parse_args(argv)
    try:
        meta = pack(
            args.folder,
            args.out_dir,
            args.resolution,
            args.maxcount,
            args.labels,
            args.channels,
            args.seed,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {meta['count']} images into {len(meta['shards'])} shards in {args.out_dir} "
        f"({meta['skipped']} unreadable files skipped)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
