"""``accelerate launch`` of the ``cfm`` command with two CPU processes (gloo), as the README runs it
(``--multi_gpu`` selects accelerate's torch.distributed launcher; ``--cpu`` would start one process).

The two processes follow the loss curve of one process accumulating two micro-batches of the same
global batch (the same chunks of it, see :mod:`cfm_core.training.trainer`), and only rank 0 writes
the log, the samples and the checkpoint.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cfm_core.cli import main
from cfm_core.training import read_log

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="gloo launch on Linux/macOS")
def test_accelerate_launch_two_processes_matches_one_process(tmp_path):
    launched = tmp_path / "launched"
    command = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--multi_gpu",  # accelerate's torch.distributed launcher; on a CPU-only machine: gloo
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--num_cpu_threads_per_process",
        "1",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "cfm_core.cli",
        *TOY_RUN,
        "--train.output-dir",
        str(launched),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    single = tmp_path / "single"
    assert main([*TOY_RUN, "--train.grad-accum", "2", "--train.output-dir", str(single)]) == 0
    losses = [[r["loss"] for r in read_log(run) if "loss" in r] for run in (launched, single)]
    assert len(losses[0]) == 4 and len(set(losses[0])) == 4
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    # rank 0 alone writes: one log line per step, one checkpoint, one samples folder
    assert sorted(p.name for p in launched.iterdir()) == sorted(p.name for p in single.iterdir())
    assert len((launched / "log.jsonl").read_text().splitlines()) == len(
        (single / "log.jsonl").read_text().splitlines()
    )
