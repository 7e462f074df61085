"""Test helpers for apps: run a ``cfm`` command in-process and check that it refuses bad input
cleanly (exit code 2, one line naming the problem, no traceback, nothing written), the broken
checkpoints every command that reads one must refuse, that a ``data(step, rows)`` function
builds each process's rows exactly as the global batch holds them, and that ``accelerate launch``
of a training command with two CPU processes trains as one process does."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from cfm_core.cli import main
from cfm_core.conditions import select_condition
from cfm_core.training.checkpoint import latest_checkpoint
from cfm_core.training.metric_log import read_log
from cfm_core.training.seeding import DATA_STREAM, seed_everything, step_seed
from cfm_core.training.trainer import split_batch, takes_rows

#: The kinds of broken checkpoint :func:`broken_checkpoints` makes, in order.
BROKEN_CHECKPOINT_CASES = (
    "missing",
    "empty-folder",
    "meta-empty",
    "meta-not-json",
    "meta-missing-keys",
    "other-format",
    "truncated-model",
    "missing-model",
    "other-app",
)

#: ``(command, case)`` pairs every app's ``sample``, ``eval`` and ``info`` must refuse (``info``
#: prints another app's checkpoint rather than refusing it).
CHECKPOINT_COMMAND_CASES = [
    (command, case)
    for command in ("sample", "eval", "info")
    for case in BROKEN_CHECKPOINT_CASES
    if (command, case) != ("info", "other-app")
]


def run_cfm(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run ``cfm argv`` in this process: ``(exit code, stdout, stderr)``; an option parser's
    ``SystemExit`` gives its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def tree_state(roots: Iterable[str | Path]) -> dict[str, str]:
    """Every file and folder under ``roots`` with the SHA-256 of its bytes (folders: ``"dir"``)."""
    state = {}
    for root in map(Path, roots):
        for path in [root, *root.rglob("*")] if root.exists() else []:
            state[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def assert_refused(
    argv: Sequence[str], *fragments: str, unchanged: Iterable[str | Path] = (), parser: bool = False
) -> str:
    """Assert that ``cfm argv`` exits with code 2 and no traceback, with exactly one
    ``cfm <app> <command>: error: ...`` line on stderr holding every fragment, and that nothing
    under ``unchanged`` was created, changed or removed. ``parser=True``: the option parser (tyro)
    refused the value in its own box instead of an error line. Returns stderr."""
    roots = list(unchanged)
    before = tree_state(roots)
    code, _, err = run_cfm(argv)
    shown = " ".join(err.split())
    assert "Traceback" not in err, f"{list(argv)} printed a traceback:\n{err}"
    assert code == 2, f"{list(argv)} exited with {code}, not 2; stderr:\n{err}"
    if parser:
        assert all(" ".join(f.split()) in shown for f in fragments), f"missing {fragments} in:\n{err}"
    else:
        lines = [line for line in err.splitlines() if ": error: " in line]
        assert len(lines) == 1, f"{list(argv)}: expected one error line, got:\n{err}"
        assert all(f in lines[0] for f in fragments), f"missing {fragments} in: {lines[0]}"
    assert tree_state(roots) == before, f"{list(argv)} changed files under {roots}"
    return err


def broken_checkpoints(run: str | Path, into: str | Path) -> dict[str, tuple[Path, str]]:
    """Broken copies of ``run``'s newest checkpoint, made in ``into``: ``{case: (path, what the
    error must say)}``: missing, empty folder, meta.json empty / not JSON / missing keys / another
    format, model.safetensors truncated / missing, another app's checkpoint."""
    source, into = latest_checkpoint(run), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[Path, str]] = {
        "missing": (into / "missing", "not found"),
        "empty-folder": (into / "empty", "holds no checkpoint"),
    }
    (into / "empty").mkdir(exist_ok=True)

    def copy(name: str) -> Path:
        target = into / name / source.name
        if not target.exists():
            shutil.copytree(source, target)
        return target

    def edit_meta(name: str, **changes) -> Path:
        target = copy(name)
        meta = json.loads((target / "meta.json").read_text())
        meta.update(changes)
        for key in [k for k, v in changes.items() if v is None]:
            del meta[key]
        (target / "meta.json").write_text(json.dumps(meta))
        return target

    empty = copy("meta-empty")
    (empty / "meta.json").write_text("")
    cases["meta-empty"] = (empty, f"corrupt checkpoint file {empty / 'meta.json'}")
    garbage = copy("meta-not-json")
    (garbage / "meta.json").write_text("{'step': 1,")
    cases["meta-not-json"] = (garbage, f"corrupt checkpoint file {garbage / 'meta.json'}")
    cases["meta-missing-keys"] = (edit_meta("meta-missing-keys", formulation=None), "missing keys ['formulation']")
    cases["other-format"] = (edit_meta("other-format", format=99), "checkpoint format 99")
    truncated = copy("truncated-model")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    cases["truncated-model"] = (truncated, f"corrupt checkpoint file {weights}")
    lost = copy("missing-model")
    (lost / "model.safetensors").unlink()
    cases["missing-model"] = (lost, f"checkpoint file missing: {lost / 'model.safetensors'}")
    cases["other-app"] = (edit_meta("other-app", app="another-app"), "was trained by app 'another-app'")
    return cases


def assert_catalogue_case_refused(app: str, argv: Sequence[str], fragments: Sequence[str], ws: Path, run: Path) -> None:
    """Run one bad-input catalogue case of ``app``: ``argv`` (after the app name; ``{ws}`` is the
    workspace) gets ``--checkpoint run`` for ``sample``/``eval`` and a workspace output folder for
    ``train`` unless it names one; it must be refused with ``fragments`` and leave ``ws`` and
    ``run`` unchanged."""
    full = [app, *(str(a).format(ws=ws) for a in argv)]
    if full[1] in ("sample", "eval"):
        full[2:2] = ["--checkpoint", str(run)]
    if full[1] == "train" and not any(a.startswith("--train.output-dir") for a in full):
        full += ["--train.output-dir", str(ws / "run")]
    assert_refused(full, *(f.format(ws=ws) for f in fragments), unchanged=[ws, run])


def assert_broken_checkpoint_refused(
    app: str, command: str, checkpoint: Path, message: str, ws: Path, sample_args: Sequence[str | Path]
) -> None:
    """``cfm app command --checkpoint checkpoint`` (one of :data:`CHECKPOINT_COMMAND_CASES`) must be
    refused naming ``--checkpoint`` and ``message``, leaving ``ws`` unchanged; ``sample`` gets
    ``sample_args`` (its input and output options), ``eval`` an output folder in ``ws``."""
    extra = {"sample": list(sample_args), "eval": ["--out", ws / "eval"], "info": []}[command]
    assert_refused([app, command, "--checkpoint", checkpoint, *extra], "--checkpoint", message, unchanged=[ws])


def assert_rows_match_global_batch(
    data: Callable[..., Any], step: int, world: int = 2, *, seed: int = 0, atol: float = 0.0
) -> None:
    """Check that ``data(step, rows=slice(rank, None, world))`` is rows ``rank::world`` of the
    global batch ``data(step)`` for every ``rank``, the condition included (to ``atol``; exact by
    default), each call made with the RNGs seeded as the trainer seeds them (training ``seed``)."""
    assert takes_rows(data), "data takes no rows parameter"

    def built(**rows: slice) -> tuple[torch.Tensor, Any]:
        seed_everything(step_seed(seed, step, DATA_STREAM))
        return split_batch(data(step, **rows), step)

    x, cond = built()
    assert x.shape[0] % world == 0 and x.shape[0] >= world, f"{x.shape[0]} rows do not split over {world}"
    for rank in range(world):
        rows = slice(rank, None, world)
        expected = (x[rows], select_condition(cond, rows))
        message = f"rank {rank} of {world}"
        torch.testing.assert_close(built(rows=rows), expected, rtol=0, atol=atol, msg=lambda m, s=message: f"{s}: {m}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(argv: Sequence[str], processes: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    """``accelerate launch -m cfm_core.cli argv`` with ``processes`` processes on one machine, as the
    README runs it (``--multi_gpu`` selects accelerate's torch.distributed launcher; on a CPU-only
    machine the processes form a gloo group), one thread each, on a free port."""
    command = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
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
        *map(str, argv),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def assert_launch_matches_one_process(run: Sequence[str], out: Path, *, rel: float = 1e-5) -> list[float]:
    """Train ``cfm run`` (a train command logging every step, without ``--train.output-dir``) with
    two launched processes and with one process accumulating two micro-batches of the same global
    batch (the same chunks of it, see :mod:`cfm_core.training.trainer`), into folders under
    ``out``; check that the loss curves agree to ``rel`` and that the launched run wrote what the
    single one did (rank 0 alone writes the log, samples and checkpoints). Returns the launched
    run's losses."""
    launched, single = Path(out) / "launched", Path(out) / "single"
    result = accelerate_launch([*run, "--train.output-dir", launched])
    assert result.returncode == 0, result.stderr[-3000:]
    assert main([*map(str, run), "--train.grad-accum", "2", "--train.output-dir", str(single)]) == 0
    losses = [[r["loss"] for r in read_log(folder) if "loss" in r] for folder in (launched, single)]
    assert len(losses[0]) > 1 and len(set(losses[0])) == len(losses[0]), losses[0]
    assert len(losses[0]) == len(losses[1]), losses
    assert all(math.isclose(a, b, rel_tol=rel) for a, b in zip(*losses, strict=True)), losses
    assert sorted(p.name for p in launched.iterdir()) == sorted(p.name for p in single.iterdir())
    lines = [len((folder / "log.jsonl").read_text().splitlines()) for folder in (launched, single)]
    assert lines[0] == lines[1]
    return losses[0]
