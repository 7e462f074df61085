"""Derivative-cost benchmark: what the total time derivative costs per training step, by backend and
forward-mode rules, on the toy MLP and the image app's micro UNet.

Three measurements per network, every model built from the app's own config (``build_model``) with
only the method options changed: the derivative pass alone (``cfm_core.derivatives``) in units of
one forward pass without gradients, the exact JVP with PyTorch's generic forward-mode rules and with
the lean rules of :mod:`cfm_core.forward_rules`; the training step (loss, backward, AdamW) of the
multi-step baseline and of CFM with each backend, timed interleaved on the same batches; and the
memory autograd keeps for the backward pass of one loss evaluation (the bytes of the distinct
tensors saved for backward, counted by ``torch.autograd.graph.saved_tensors_hooks``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace

import torch
from cfm_core.cli import config_to_dict
from cfm_core.derivatives import jvp_derivative
from cfm_toy.commands import build_model as build_toy
from cfm_toy.commands import toy_batches
from cfm_toy.config import ToyTrainConfig
from harness import Report, Table
from timing import interleaved_step_times, optimizer_step

BASELINE = "baseline (r = t only)"
#: The training variants: name -> method options (the baseline trains r = t only).
VARIANTS: dict[str, dict] = {
    BASELINE: {"instantaneous_ratio": 1.0},
    "jvp, torch rules": {"derivative": "jvp", "forward_rules": "torch"},
    "jvp, lean rules": {"derivative": "jvp", "forward_rules": "lean"},
    "jvp_one_pass, torch rules": {"derivative": "jvp_one_pass", "forward_rules": "torch"},
    "jvp_one_pass, lean rules": {"derivative": "jvp_one_pass", "forward_rules": "lean"},
    "finite_difference": {"derivative": "finite_difference"},
}


def _toy(options: dict):
    """The toy app's loss with ``options`` (independent noise: no assignment in the step) and its batches."""
    base = ToyTrainConfig()
    cfg = replace(base, method=replace(base.method, coupling="independent", **options))
    torch.manual_seed(0)
    return build_toy(config_to_dict(cfg)), toy_batches(cfg.data, cfg.train.batch_size)


def _image(options: dict):
    """The image app's quick preset (micro UNet, digits) with ``options`` and its batches."""
    from cfm_image.commands import build_model
    from cfm_image.config import TRAIN_PRESETS
    from cfm_image.sources import open_training_data, training_batches

    quick = TRAIN_PRESETS["quick"]
    source, data = open_training_data(quick.data, seed=quick.train.seed)
    cfg = replace(quick, data=data, method=replace(quick.method, **options))
    torch.manual_seed(0)
    return build_model(config_to_dict(cfg)), training_batches(source, data, cfg.train.batch_size)


NETWORKS: dict[str, Callable[[dict], tuple]] = {
    "toy MLP (256 x 4, batch 512)": _toy,
    "micro UNet (digits 16x16, batch 64)": _image,
}


def _split(batch):
    return batch if isinstance(batch, (tuple, list)) else (batch, None)


def _pass_costs(build: Callable[[dict], tuple], repeats: int) -> dict[str, float]:
    """Seconds of one forward without gradients and of the JVP with each rule set, interleaved."""
    loss_fn, batches = build({})
    model = loss_fn.model
    x, cond = _split(batches(0))
    n = x.shape[0]
    gen = torch.Generator().manual_seed(0)
    t = model.formulation.time_from_unit(0.2 + 0.3 * torch.rand(n, generator=gen))
    r = model.formulation.time_from_unit(0.6 + 0.3 * torch.rand(n, generator=gen))
    xt = torch.randn_like(x)
    velocity = torch.randn_like(x)

    def field(x_, t_):
        return model.field(x_, t_, r, cond)

    def forward(i: int) -> None:
        with torch.no_grad():
            field(xt, t)

    steps = {
        "forward": forward,
        "jvp, torch rules": lambda i: jvp_derivative(field, xt, t, velocity, lean=False),
        "jvp, lean rules": lambda i: jvp_derivative(field, xt, t, velocity, lean=True),
    }
    return interleaved_step_times(steps, repeats)


def _saved_bytes(loss_fn, batch) -> int:
    """Bytes of the distinct tensors autograd saves for the backward pass of one loss evaluation."""
    seen: dict[tuple, int] = {}

    def record(tensor: torch.Tensor) -> None:
        try:
            storage = tensor.untyped_storage()
            seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        except RuntimeError:  # a tensor without an accessible storage (forward-mode AD): its own size
            seen[("tensor", id(tensor))] = tensor.numel() * tensor.element_size()

    def pack(tensor: torch.Tensor):
        record(tensor)
        return tensor

    x, cond = _split(batch)
    torch.manual_seed(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_fn(x, cond)
    del loss
    return sum(seen.values())


def run(argv: list[str]) -> Report:
    parser = argparse.ArgumentParser(prog="run.py derivative_cost", description=__doc__)
    parser.add_argument("--repeats", type=int, default=6, help="steps per timing round (5 rounds)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--quick", action="store_true", help="1 step per round: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1

    pass_rows, step_rows = [], []
    for network in args.networks:
        build = NETWORKS[network]
        costs = _pass_costs(build, args.repeats)
        forward = costs["forward"]
        pass_rows.append(
            [network, forward * 1e3, costs["jvp, torch rules"] / forward, costs["jvp, lean rules"] / forward]
        )

        steps, saved = {}, {}
        for name, options in VARIANTS.items():
            loss_fn, batches = build(options)
            loss_fn.train()
            saved[name] = _saved_bytes(loss_fn, batches(0))
            optimizer = torch.optim.AdamW(loss_fn.parameters(), lr=1e-4)
            steps[name] = optimizer_step(loss_fn, optimizer, batches)
        times = interleaved_step_times(steps, args.repeats)
        base, base_saved = times[BASELINE], saved[BASELINE]
        for name in VARIANTS:
            step_rows.append(
                [network, name, times[name] * 1e3, times[name] / base, saved[name] / 2**20, saved[name] / base_saved]
            )

    return Report(
        name="derivative-cost",
        title="Derivative cost: backends and forward-mode rules (toy MLP, micro UNet; CPU)",
        settings={
            "toy": "ToyTrainConfig defaults, independent noise",
            "image": "quick preset (micro UNet), digits",
            "timing": f"interleaved, median of 5 rounds of {args.repeats} steps",
            "threads": torch.get_num_threads(),
        },
        tables=[
            Table(
                "The derivative pass alone: ms of one forward without gradients, and the JVP's time in forwards",
                ["network", "forward ms", "jvp, torch rules (forwards)", "jvp, lean rules (forwards)"],
                pass_rows,
            ),
            Table(
                "Training step (loss, backward, AdamW): ms, ratio to the baseline's step, and the memory "
                "autograd keeps for the backward pass (MiB of distinct saved tensors, ratio to the baseline's)",
                ["network", "variant", "step ms", "step ratio", "saved MiB", "saved ratio"],
                step_rows,
            ),
        ],
        notes=[
            "CFM rows: r = t share 0.5, every other option at the app's default; the baseline trains r = t only.",
            "jvp: a tangent pass without gradients, then the ordinary forward; jvp_one_pass: one dual pass "
            "with gradients gives both; finite_difference: one extra forward pass without gradients.",
            "torch rules: PyTorch's generic forward-mode formulas; lean rules: cfm_core.forward_rules "
            "(exact tangents of linear, convolution and normalisation layers with constant weights).",
            "The saved-tensor count covers what autograd keeps between the forward and the backward pass, "
            "not the transient tensors of the pass itself or the optimizer state; a saved tensor whose "
            "storage forward-mode AD hides counts at its own size.",
        ],
    )
