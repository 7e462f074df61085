"""GPU training throughput of the image ``cifar``, geometry ``gd`` and SDF ``base`` presets.

    uv run python tools/bench/gpu.py [--steps 30] [--window 10] [--only image] [--record]

For each preset, CFM and its multi-step baseline (``--method.instantaneous-ratio 1.0``) are trained
through the app's own ``train`` command, in this process, under four numeric settings: float32
without TF32, float32 with TF32, bf16 autocast with TF32, and the latter compiled
(``--train.compile``). Each run trains ``--steps`` steps logging every ``--window`` steps; the step
time is the median over the logged windows after the first one (warm-up and compilation), the
samples per second follow from the preset's global batch, and the peak memory is CUDA's peak
allocation over the run (the end-of-run sample hook included). ``--record`` writes the ``gpu``
section of BENCHMARKS.md. Without CUDA it prints "skipped: no CUDA" and exits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SETTINGS = {
    "fp32": ["--train.no-tf32"],
    "tf32": ["--train.tf32"],
    "bf16 + tf32": ["--train.tf32", "--train.mixed-precision", "bf16"],
    "bf16 + tf32 + compile": ["--train.tf32", "--train.mixed-precision", "bf16", "--train.compile"],
}
PRESETS = {
    "image cifar": ["image", "train", "--preset", "cifar"],
    "geometry gd": ["geometry", "train", "--preset", "gd"],
    "sdf base": ["sdf", "train", "--preset", "base"],
}
METHODS = {"CFM": [], "baseline": ["--method.instantaneous-ratio", "1.0"]}
COLUMNS = ["preset", "method", "setting", "ms/step", "samples/s", "peak GiB"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu.py", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--window", type=int, default=10, help="steps per timing window (the first is warm-up)")
    parser.add_argument("--only", choices=sorted({name.split()[0] for name in PRESETS}), help="one app's preset")
    parser.add_argument("--record", action="store_true", help="record the gpu section of BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.window < 1 or args.steps < 2 * args.window:
        parser.error("--steps must hold at least two --window windows")
    return args


def measure(command: list[str], steps: int, window: int) -> dict[str, float]:
    """Train ``cfm <command>`` for ``steps`` steps in a temporary run directory; its step time
    (seconds, median of the windows after the first), samples per second and peak memory (GiB)."""
    from cfm_core.cli import main
    from cfm_core.training import latest_checkpoint, read_log

    with tempfile.TemporaryDirectory(prefix="cfm-gpu-bench-") as run:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        options = ["--train.steps", str(steps), "--train.log-every", str(window), "--train.checkpoint-every", "0"]
        code = main([*command, *options, "--train.sample-every", "0", "--train.output-dir", run])
        if code:
            raise RuntimeError(f"cfm {' '.join(command)} exited with {code}")
        peak = torch.cuda.max_memory_allocated() / 2**30
        rates = [r["steps_per_s"] for r in read_log(run) if "steps_per_s" in r][1:]
        meta = json.loads((latest_checkpoint(run) / "meta.json").read_text())
    seconds = 1.0 / statistics.median(rates)
    return {"seconds": seconds, "samples_per_s": meta["config"]["train"]["batch_size"] / seconds, "peak_gib": peak}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("skipped: no CUDA")
        return 0
    rows = []
    for preset, command in PRESETS.items():
        if args.only and not preset.startswith(args.only):
            continue
        for method, method_options in METHODS.items():
            for setting, setting_options in SETTINGS.items():
                result = measure([*command, *method_options, *setting_options], args.steps, args.window)
                rows.append(
                    [preset, method, setting, 1000 * result["seconds"], result["samples_per_s"], result["peak_gib"]]
                )
                print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in rows[-1]), flush=True)
    if args.record:
        sys.path.insert(0, str(HERE))
        from harness import Report, Table, record

        device = torch.cuda.get_device_name(0)
        table = Table(f"training throughput on {device} (median over {args.window}-step windows)", COLUMNS, rows)
        settings = {"steps": args.steps, "window": args.window, "device": device}
        print(f"recorded {record(Report('gpu', 'GPU training throughput', settings, tables=[table]))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
