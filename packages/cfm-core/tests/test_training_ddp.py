"""DDP on two CPU processes (gloo): gradients synchronise through the JVP loss, each rank builds only
its shard of the global batch, a short run keeps the ranks in step, checkpoints and logs once (rank
0), and follows the loss curve of one process accumulating two micro-batches of the same global batch.

The workers are forked from the test process (``torch.multiprocessing``, start method "fork"), so
they inherit the imported torch instead of spending many seconds importing it again; each runs
single-threaded (a forked child deadlocks in the parent's OpenMP thread pool otherwise). Each
worker writes its gradients after one backward pass, then trains two steps and writes its weights.
"""

from __future__ import annotations

import faulthandler
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from accelerate.state import AcceleratorState
from cfm_core.training import Trainer, loss_stream, read_log, seed_everything, step_seed
from safetensors.torch import load_file, save_file

from .test_training_fixtures import gaussian_data, make_loss, train_config

SEED = 11
WORLD = 2
STEPS = 3
#: Seconds the workers may take in all before the test stops them and fails (a hung fork must not
#: hang the suite; each worker also arms its own 120 s watchdog once it runs).
WORKERS_DEADLINE = 600


def _worker(rank: int, port: int, out: Path) -> None:
    faulthandler.dump_traceback_later(120, exit=True)  # a hung worker fails the test, not CI
    torch.set_num_threads(1)  # the parent's OpenMP pool does not survive fork: stay serial
    AcceleratorState._reset_state(reset_partial_state=True)  # forget the parent's single process
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(WORLD),
    )
    asked = []

    def shard(step: int, rows: slice) -> torch.Tensor:
        asked.append(rows)
        return gaussian_data(step)[rows]

    trainer = Trainer(
        make_loss(),
        shard,
        train_config(out / "run", seed=SEED, steps=STEPS, ema_decays=(0.9,)),
        run_config={},
        app="test",
    )
    assert trainer.accelerator.num_processes == WORLD
    assert trainer.accelerator.process_index == rank
    trainer.backward(0)
    grads = {n: p.grad.contiguous() for n, p in trainer.unwrapped_model.named_parameters()}
    save_file(grads, str(out / f"grads-{rank}.safetensors"))
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.fit()
    assert asked == [slice(rank, None, WORLD)] * (1 + STEPS)  # its own rows only, each step
    weights = {n: p.detach().contiguous() for n, p in trainer.unwrapped_model.named_parameters()}
    save_file(weights, str(out / f"weights-{rank}.safetensors"))
    torch.distributed.destroy_process_group()
    faulthandler.cancel_dump_traceback_later()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _single_process_gradients(rank: int) -> dict[str, torch.Tensor]:
    """Rank ``rank``'s gradient computed alone: its rows of the global batch, its loss stream."""
    loss = make_loss()
    seed_everything(step_seed(SEED, 0, 0))
    x = gaussian_data(0)[rank::WORLD]
    seed_everything(step_seed(SEED, 0, loss_stream(rank)))
    loss(x).backward()
    return {n: p.grad.clone() for n, p in loss.model.named_parameters()}


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_ddp_gradients_are_synchronised_through_the_jvp_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # accelerate warns and picks a count otherwise
    alone = [_single_process_gradients(rank) for rank in range(WORLD)]
    workers = mp.start_processes(_worker, args=(_free_port(), tmp_path), nprocs=WORLD, join=False, start_method="fork")
    deadline = time.monotonic() + WORKERS_DEADLINE
    while not workers.join(timeout=5):
        if time.monotonic() > deadline:
            for process in workers.processes:
                process.kill()
            pytest.fail(f"the DDP workers had not finished after {WORKERS_DEADLINE} s: stopped them")

    grads = [load_file(str(tmp_path / f"grads-{rank}.safetensors")) for rank in range(WORLD)]
    assert any(not torch.allclose(alone[0][n], alone[1][n]) for n in alone[0])  # data differ
    for name, average in ((n, (alone[0][n] + alone[1][n]) / 2) for n in alone[0]):
        assert torch.equal(grads[0][name], grads[1][name]), name
        assert torch.allclose(grads[0][name], average, rtol=1e-5, atol=1e-7), name

    weights = [load_file(str(tmp_path / f"weights-{rank}.safetensors")) for rank in range(WORLD)]
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("step-*")) == [f"step-{STEPS:07d}"]
    assert len((run / "log.jsonl").read_text().splitlines()) == STEPS

    # one process, the same global batch in two micro-batches: the same chunks, the same run
    single = Trainer(
        make_loss(),
        gaussian_data,
        train_config(tmp_path / "single", seed=SEED, steps=STEPS, ema_decays=(0.9,), grad_accum=WORLD),
        run_config={},
        app="test",
    )
    single.fit()
    losses = [[r["loss"] for r in read_log(path)] for path in (run, tmp_path / "single")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert len(set(losses[0])) == STEPS  # a curve, not one value
    for name, value in single.unwrapped_model.named_parameters():
        assert torch.allclose(weights[0][name], value, rtol=1e-5, atol=1e-6), name
