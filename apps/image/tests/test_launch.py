"""``accelerate launch`` of ``cfm image train`` with two CPU processes (gloo): each process loads
only its rows of the global batch of digits, the two follow the loss curve of one process
accumulating two micro-batches of the same global batch, and only rank 0 writes the log, the
samples and the checkpoint."""

from __future__ import annotations

import sys

import pytest
from cfm_core.testing import assert_launch_matches_one_process

# 8x8 class-conditional digits, the micro UNet narrowed to 8 channels: seconds per process
IMAGE_RUN = [
    "image",
    "train",
    "--net.preset",
    "micro",
    "--net.base-channels",
    "8",
    "--data.resolution",
    "8",
    "--train.batch-size",
    "16",
    "--train.steps",
    "4",
    "--train.log-every",
    "1",
    "--train.sample-every",
    "0",
    "--train.checkpoint-every",
    "0",
]


@pytest.mark.skipif(sys.platform == "win32", reason="gloo launch on Linux/macOS")
def test_accelerate_launch_two_processes_matches_one_process(tmp_path):
    assert len(assert_launch_matches_one_process(IMAGE_RUN, tmp_path)) == 4
