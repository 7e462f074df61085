"""``accelerate launch`` of the ``cfm`` command with two CPU processes (gloo), as the README runs it:
the two processes follow the loss curve of one process accumulating two micro-batches of the same
global batch, and only rank 0 writes the log, the samples and the checkpoint."""

from __future__ import annotations

import sys

import pytest
from cfm_core.testing import assert_launch_matches_one_process

TOY_RUN = [
    "toy",
    "train",
    "--net.hidden",
    "16",
    "--net.depth",
    "1",
    "--train.steps",
    "4",
    "--train.batch-size",
    "16",
    "--train.log-every",
    "1",
    "--train.checkpoint-every",
    "0",
]


@pytest.mark.skipif(sys.platform == "win32", reason="gloo launch on Linux/macOS")
def test_accelerate_launch_two_processes_matches_one_process(tmp_path):
    assert len(assert_launch_matches_one_process(TOY_RUN, tmp_path)) == 4
