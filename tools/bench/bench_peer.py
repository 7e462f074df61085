"""Peer benchmark: the core's default recipe against the public MeanFlow implementation.

The peer is ``rectified-flow-pytorch``'s ``MeanFlow`` with its own defaults (adaptive loss weight
p = 0.5, logit-normal times, half the batches with r = t). It lives in the ``bench`` dependency
group only: ``uv sync --locked --group bench``. Both sides train the same network architecture from
the same initial weights (one seed), on the same batches, with the same optimiser, learning-rate
warm-up, gradient clipping, EMA and number of steps; each side feeds the network its own time
convention. ``--section toy``, ``digits`` or ``toy-recipes`` records the section ``peer-toy``,
``peer-digits`` or ``peer-toy-recipes``.

* ``toy``: the 2-D checkerboard with a plain MLP on raw coordinates (``ToyMLP`` without point
  features, independent noise): what a user's own network gets from the core defaults. Scores:
  energy distance to held-out data relative to that of the noise, and the share of samples inside
  the checkerboard's squares, at one and two steps.
* ``digits``: the image app's built-in 16x16 digits and micro UNet (the quick preset's data, net
  and budget). Score: the app's classifier Frechet distance at one and two steps.
* ``toy-recipes``: the toy setting with our u side trained with each of ``RECIPE_VARIANTS``
  (LossRecipe options between the core's defaults and MeanFlow's), against the peer, for each of
  ``--recipe-seeds`` (training seeds; the held-out data and noise follow the seed as in ``toy``).

Our side samples with ``steps`` cumulative jumps on the formulation's grid; MeanFlow's two steps
are its average velocity over ``[1, 1/2]`` then ``[1/2, 0]`` (the MeanFlow paper's two-step
sampler; the package's own ``sample(steps=2)`` integrates the r = t field with Euler instead).
Training-step time is measured interleaved (:mod:`timing`).
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

import torch
from cfm_core import CFMLoss, FlowMap, LossRecipe
from cfm_core.metrics import energy_distance
from cfm_core.training import seed_initial_weights
from cfm_core.training.ema import EMA
from cfm_toy.backbone import ToyMLP
from cfm_toy.data import sample_toy
from harness import Report, Table
from timing import interleaved_step_times
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

if TYPE_CHECKING:
    from cfm_image.config import ImageTrainConfig

SECTIONS = ("toy", "digits", "toy-recipes", "digits-recipes")
SAMPLE_STEPS = (1, 2)
#: Where the toy section's notes point for the recipes tried against the peer.
TOY_TRIED_NOTE = (
    "What was tried to make the core's default recipe win this comparison (the time law, the adaptive "
    "weight, the r = t share, the finite-difference step; seeds 0 and 1): [design notes, MeanFlow's "
    "recipe](docs/design-notes.md#not-adopted-meanflows-time-law-and-adaptive-weight-as-the-core-default), "
    "with the scores in [peer-toy-recipes](#bench-peer-toy-recipes)."
)
OURS_DEFAULTS_NOTE = (
    "Our side is CFMLoss(FlowMap(net, formulation)) with every other option at its default; "
    "MeanFlow is MeanFlow(net) with every option at its default."
)
RECIPES_NOTE = (
    "Our side is CFMLoss(FlowMap(net, 'u'), LossRecipe(options)) with the options named in the model column, "
    "every other at its default (logit_normal: (mean, std) in unit time, where 0 is the noise); MeanFlow is "
    "MeanFlow(net) with every option at its default. Training seed 0 is peer-toy's setting."
)
#: Our side's LossRecipe options tried against the peer in ``--section toy-recipes``: the core
#: default, MeanFlow's recipe as the issue passed it, MeanFlow's time law and weight, and the
#: adaptive weights and finite-difference steps around the best of a wider search.
RECIPE_VARIANTS: tuple[dict, ...] = (
    {},
    {"adaptive_p": 1.0, "time_sampler": "logit_normal", "instantaneous_ratio": 0.75},
    {"adaptive_p": 0.5, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0)},
    {"adaptive_p": 0.5, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0), "derivative": "jvp"},
    {"adaptive_p": 0.6, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0)},
    {"adaptive_p": 0.65, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0), "fd_step": 0.02},
    {"adaptive_p": 0.7, "time_sampler": "logit_normal", "logit_normal": (0.3, 1.0), "fd_step": 0.02},
    {"adaptive_p": 0.75, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0)},
    {"adaptive_p": 0.75, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0), "fd_step": 0.02},
    {"adaptive_p": 0.75, "time_sampler": "logit_normal", "logit_normal": (0.2, 1.0)},
    {"adaptive_p": 1.0, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0)},
)
#: Our side's LossRecipe options tried against the peer in ``--section digits-recipes``: the core
#: default, MeanFlow's own recipe (its adaptive weight, time law and exact derivative), that recipe
#: with the core's forward and central finite differences, and the toy's closest variant with each
#: derivative.
DIGITS_RECIPE_VARIANTS: tuple[dict, ...] = (
    {},
    {"adaptive_p": 0.5, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0), "derivative": "jvp"},
    {"adaptive_p": 0.5, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0)},
    {"adaptive_p": 0.5, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0), "fd_scheme": "central"},
    {"adaptive_p": 0.65, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0), "fd_step": 0.02},
    {"adaptive_p": 0.65, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0), "fd_scheme": "central"},
    {"adaptive_p": 0.65, "time_sampler": "logit_normal", "logit_normal": (0.4, 1.0), "derivative": "jvp"},
)
DIGITS_RECIPES_NOTE = (
    "Our side is CFMLoss(FlowMap(unet, 'u'), LossRecipe(options)) with the options named in the model column, "
    "every other at its default (logit_normal: (mean, std) in unit time, where 0 is the noise); MeanFlow is "
    "MeanFlow(unet) with every option at its default. One training seed (the quick preset's), as in peer-digits."
)
#: A training batch: data, or data and class labels.
Batch = Tensor | tuple[Tensor, Tensor]
#: Side of one checkerboard square in data units (``cfm_toy.data``: a 4x4 board of unit squares
#: on [-2, 2]^2, scaled by sqrt(3/4)).
CHECKER_CELL = math.sqrt(3.0 / 4.0)


def require_peer() -> type[nn.Module]:
    """The peer's ``MeanFlow`` class, or a one-line exit naming the missing dependency group."""
    try:
        from rectified_flow_pytorch import MeanFlow
    except ImportError as error:
        raise SystemExit(
            "bench_peer needs the peer implementation from the bench dependency group "
            f"({error}); install it with: uv sync --locked --group bench"
        ) from error
    return MeanFlow


class PeerTimes(nn.Module):
    """Our two-time network under MeanFlow's call ``model(x, t, t - r, cond)``: the same module, its
    two time inputs fed MeanFlow's time ``t`` (1 = noise) and interval ``t - r``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor, delta: Tensor, cond: Tensor | None = None) -> Tensor:
        # torch's fused attention kernels have no forward-mode derivative (MeanFlow's jvp); the
        # core selects the math kernel for its own tangent pass in the same way
        with sdpa_kernel(SDPBackend.MATH):
            return self.net(x, t, delta, cond)


@dataclass
class Contender:
    """One side: a module whose call on a data batch is its training loss, and its sampler."""

    name: str
    loss: nn.Module
    sample: Callable[[nn.Module, Tensor, int, Tensor | None], Tensor]


def ours_sample(loss: CFMLoss, noise: Tensor, steps: int, cond: Tensor | None = None) -> Tensor:
    """Our cumulative jumps on the formulation's default grid."""
    return loss.model.sample(noise, steps=steps, cond=cond)


@torch.no_grad()
def meanflow_sample(model: nn.Module, noise: Tensor, steps: int, cond: Tensor | None = None) -> Tensor:
    """MeanFlow's ``steps`` jumps ``z <- z - (t - r) u(z, t, t - r)`` on a uniform grid from 1 to 0."""
    z = noise
    times = torch.linspace(1.0, 0.0, steps + 1)
    for t, r in zip(times[:-1], times[1:], strict=True):
        tb, db = t.expand(z.shape[0]), (t - r).expand(z.shape[0])
        z = z - (t - r) * model.model(z, tb, db, cond)
    return z


def contenders(
    make_net: Callable[[], nn.Module], formulations: list[str], seed: int, null_cond: Tensor | None = None
) -> list[Contender]:
    """Our default recipe for each formulation and the peer's MeanFlow, all from one initial
    network; class-conditional (``null_cond``: the null class) when the network takes labels."""
    mean_flow = require_peer()
    seed_initial_weights(seed)
    initial = make_net()
    sides = [
        Contender(
            f"ours ({f})",
            CFMLoss(FlowMap(copy.deepcopy(initial), formulation=f, null_cond=null_cond)),
            ours_sample,
        )
        for f in formulations
    ]
    peer = mean_flow(PeerTimes(copy.deepcopy(initial)), accept_cond=null_cond is not None)
    return sides + [Contender("MeanFlow (rectified-flow-pytorch)", peer, meanflow_sample)]


def train(side: Contender, batches: Callable[[int], Batch], steps: int, lr: float, warmup: int, seed: int):
    """The core trainer's optimiser defaults: AdamW (no weight decay), a linear warm-up to a
    constant rate, the gradient norm clipped at 1, an EMA (0.999, warm-up power 0.75); returns the
    EMA copy."""
    torch.manual_seed(seed)
    module = side.loss.train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / max(1, warmup)))
    ema = EMA(module, (0.999,), warmup_power=0.75)
    for i in range(steps):
        loss = side_loss(module, batches(i))
        if not torch.isfinite(loss):
            raise RuntimeError(f"{side.name}: loss became {float(loss)} at step {i}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        ema.update()
    return ema.copy()


def side_loss(module: nn.Module, batch: Batch) -> Tensor:
    """The loss of a batch: data, or a (data, class labels) pair."""
    if isinstance(batch, (tuple, list)):
        return module(batch[0], cond=batch[1])
    return module(batch)


def step_times(sides: list[Contender], batches: Callable[[int], Batch], repeats: int) -> dict[str, float]:
    """Seconds per training step (loss, backward, AdamW) of each side, timed interleaved."""

    def make_step(side: Contender):
        module = copy.deepcopy(side.loss).train()
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=0.0)

        def step(i: int) -> None:
            loss = side_loss(module, batches(i))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    return interleaved_step_times({side.name: make_step(side) for side in sides}, repeats)


def checker_support_share(x: Tensor) -> float:
    """The share of 2-D points inside the checkerboard's squares (the data's support)."""
    cell = torch.floor(x.double() / CHECKER_CELL + 2.0)
    inside = ((cell >= 0) & (cell <= 3)).all(dim=1) & ((cell[:, 0] + cell[:, 1]) % 2 == 0)
    return float(inside.double().mean())


class ToyEval(NamedTuple):
    """The toy's held-out data, the noise its samples start from, and the noise's energy distance."""

    held_out: Tensor
    noise: Tensor
    noise_distance: float


def toy_eval(seed: int, n: int) -> ToyEval:
    """``n`` held-out checkerboard points and ``n`` noise rows, drawn from ``seed + 1``."""
    data_gen = torch.Generator().manual_seed(seed + 1)
    held_out = sample_toy("checkerboard", n, generator=data_gen).float()
    noise = torch.randn(n, 2, generator=data_gen)
    return ToyEval(held_out, noise, energy_distance(noise, held_out))


def toy_batches(batch: int) -> Callable[[int], Tensor]:
    """The training batches of step ``i`` (the same for every side and seed)."""
    return lambda i: sample_toy("checkerboard", batch, generator=torch.Generator().manual_seed(10_000 + i)).float()


def toy_scores(side: Contender, model: nn.Module, evaluation: ToyEval) -> list[float]:
    """Relative energy distance and share in the squares at one, then two steps."""
    row = []
    for steps in SAMPLE_STEPS:
        x = side.sample(model, evaluation.noise, steps, None)
        row += [energy_distance(x, evaluation.held_out) / evaluation.noise_distance, checker_support_share(x)]
    return row


def toy_net(args: argparse.Namespace) -> nn.Module:
    """The plain MLP on raw coordinates with its default time features."""
    return ToyMLP(dim=2, hidden=args.hidden, depth=args.depth, fourier_levels=0)


def toy_settings(args: argparse.Namespace, evaluation: ToyEval) -> dict:
    return {
        "toy_net": f"ToyMLP {args.hidden}x{args.depth}, raw coordinates, default time features",
        "toy_batch": args.batch,
        "toy_steps": args.steps,
        "toy_eval_samples": args.n,
        "toy_noise_energy_distance": f"{evaluation.noise_distance:.4g}",
        "toy_data_in_squares": f"{checker_support_share(evaluation.held_out):.4g}",
        "toy_lr": args.lr,
        "toy_warmup": args.warmup,
    }


TOY_COLUMNS = ["1 step rel. ED", "1 step in squares", "2 steps rel. ED", "2 steps in squares"]


def toy_section(args: argparse.Namespace) -> tuple[list[Table], dict]:
    """Train every side on the checkerboard and score one- and two-step samples."""
    evaluation = toy_eval(args.seed, args.n)
    batches = toy_batches(args.batch)
    sides = contenders(lambda: toy_net(args), args.formulations, args.seed)
    rows = []
    for side in sides:
        model = train(side, batches, args.steps, args.lr, args.warmup, args.seed)
        rows.append([side.name, *toy_scores(side, model, evaluation)])
        print(f"toy {side.name}: {rows[-1][1:]}", flush=True)
    times = step_times(sides, batches, args.timing_steps)
    peer_ms = 1000 * times[sides[-1].name]
    time_rows = [[s.name, 1000 * times[s.name], 1000 * times[s.name] / peer_ms] for s in sides]
    quality = Table(
        "Checkerboard, plain MLP on raw coordinates: energy distance relative to the noise's "
        "(lower is better) and share of samples inside the squares (higher is better)",
        ["model", *TOY_COLUMNS],
        rows,
    )
    cost = Table("Checkerboard: training step time (ms) and ratio to MeanFlow's", ["model", "ms", "ratio"], time_rows)
    return [quality, cost], toy_settings(args, evaluation)


def recipe_name(options: dict) -> str:
    """A recipe variant as its LossRecipe options (``core default`` for none)."""
    return ", ".join(f"{key}={value}" for key, value in options.items()) or "core default"


def toy_recipes_section(args: argparse.Namespace) -> tuple[list[Table], dict]:
    """The peer's MeanFlow and our u side with each of ``RECIPE_VARIANTS``, per training seed."""
    mean_flow = require_peer()
    batches = toy_batches(args.batch)
    rows = []
    for seed in args.recipe_seeds:
        evaluation = toy_eval(seed, args.n)
        seed_initial_weights(seed)
        initial = toy_net(args)
        sides = [Contender("MeanFlow (its defaults)", mean_flow(PeerTimes(copy.deepcopy(initial))), meanflow_sample)]
        sides += [
            Contender(
                recipe_name(options), CFMLoss(FlowMap(copy.deepcopy(initial), "u"), LossRecipe(**options)), ours_sample
            )
            for options in RECIPE_VARIANTS
        ]
        for side in sides:
            model = train(side, batches, args.steps, args.lr, args.warmup, seed)
            rows.append([side.name, seed, *toy_scores(side, model, evaluation)])
            print(f"toy-recipes seed {seed} {side.name}: {rows[-1][2:]}", flush=True)
    quality = Table(
        "Checkerboard, plain MLP on raw coordinates, ours (u) with LossRecipe options: energy distance "
        "relative to the noise's (lower is better) and share of samples inside the squares (higher is better)",
        ["model", "training seed", *TOY_COLUMNS],
        rows,
    )
    settings = toy_settings(args, toy_eval(args.recipe_seeds[0], args.n))
    del settings["toy_noise_energy_distance"]  # it depends on the seed's held-out draw
    return [quality], settings | {"training_seeds": " ".join(map(str, args.recipe_seeds))}


class DigitsSetting(NamedTuple):
    """The image app's quick preset as the digits comparisons use it, and its scoring."""

    quick: ImageTrainConfig
    net_config: dict
    batches: Callable[[int], Batch]
    steps: int
    null_class: Tensor
    score: Callable[[Contender, nn.Module], list[float]]


def digits_setting(args: argparse.Namespace) -> DigitsSetting:
    """The built-in digits as the image app's quick preset trains them (data, micro UNet, batch,
    learning rate, warm-up, steps), and a scorer of one- and two-step samples by the app's
    classifier Frechet distance and accuracy on fixed noise and labels."""
    from cfm_image.classifier import builtin_classifier
    from cfm_image.commands import architecture, generation_labels
    from cfm_image.config import TRAIN_PRESETS
    from cfm_image.scores import ImageScorer
    from cfm_image.sources import open_training_data, reference_images, training_batches

    quick = TRAIN_PRESETS["quick"]
    source, data = open_training_data(quick.data, seed=quick.train.seed)
    config = replace(quick, data=data, method=replace(quick.method, formulation=args.digits_formulations[0]))
    real, _ = reference_images(data, max(args.digits_n, 2000))
    scorer = ImageScorer(real, builtin_classifier(data.builtin, data.resolution).model)
    labels = generation_labels(data.num_classes, args.digits_n)
    noise = torch.randn(
        args.digits_n, data.channels, data.resolution, data.resolution, generator=torch.Generator().manual_seed(1234)
    )

    @torch.no_grad()
    def score(side: Contender, model: nn.Module) -> list[float]:
        row = []
        for n_steps in SAMPLE_STEPS:
            scores = scorer(side.sample(model, noise, n_steps, labels), labels)
            row += [scores["classifier_fd"], scores["classifier_accuracy"]]
        return row

    return DigitsSetting(
        quick=quick,
        net_config=architecture(config),
        batches=training_batches(source, data, quick.train.batch_size),
        steps=min(args.digits_steps, quick.train.steps),
        null_class=torch.tensor(data.num_classes),
        score=score,
    )


def digits_settings(setting: DigitsSetting, args: argparse.Namespace) -> dict:
    return {
        "digits_net": f"{setting.quick.net.preset} UNet, time features {setting.net_config['time_embedding']}",
        "digits_batch": setting.quick.train.batch_size,
        "digits_steps": setting.steps,
        "digits_lr": setting.quick.train.lr,
        "digits_eval_samples": args.digits_n,
    }


DIGITS_COLUMNS = ["1 step FD", "1 step accuracy", "2 steps FD", "2 steps accuracy"]
DIGITS_QUALITY = "classifier Frechet distance (lower is better) and the classifier's accuracy on the generated class"


def train_digits(setting: DigitsSetting, side: Contender) -> nn.Module:
    """``side`` trained with the quick preset's optimiser settings; returns its EMA copy."""
    train_options = setting.quick.train
    return train(side, setting.batches, setting.steps, train_options.lr, train_options.warmup_steps, train_options.seed)


def digits_section(args: argparse.Namespace) -> tuple[Table, Table, dict]:
    """Train every side on the built-in digits and score one- and two-step samples."""
    from cfm_image.unet import unet_from_config

    setting = digits_setting(args)
    sides = contenders(
        lambda: unet_from_config(setting.net_config),
        args.digits_formulations,
        setting.quick.train.seed,
        setting.null_class,
    )
    rows = []
    for side in sides:
        rows.append([side.name, *setting.score(side, train_digits(setting, side))])
        print(f"digits {side.name}: {rows[-1][1:]}", flush=True)
    times = step_times(sides, setting.batches, args.timing_steps)
    peer_ms = 1000 * times[sides[-1].name]
    quality = Table(
        f"Digits 16x16, micro UNet, class-conditional (guidance 1): {DIGITS_QUALITY}", ["model", *DIGITS_COLUMNS], rows
    )
    cost = Table(
        "Digits: training step time (ms) and ratio to MeanFlow's",
        ["model", "ms", "ratio"],
        [[s.name, 1000 * times[s.name], 1000 * times[s.name] / peer_ms] for s in sides],
    )
    return quality, cost, digits_settings(setting, args)


def digits_recipes_section(args: argparse.Namespace) -> tuple[list[Table], dict]:
    """The peer's MeanFlow and our u side with each of ``DIGITS_RECIPE_VARIANTS`` on the digits."""
    from cfm_image.unet import unet_from_config

    mean_flow = require_peer()
    setting = digits_setting(args)
    seed_initial_weights(setting.quick.train.seed)
    initial = unet_from_config(setting.net_config)
    sides = [
        Contender(
            "MeanFlow (its defaults)", mean_flow(PeerTimes(copy.deepcopy(initial)), accept_cond=True), meanflow_sample
        )
    ]
    sides += [
        Contender(
            recipe_name(options),
            CFMLoss(FlowMap(copy.deepcopy(initial), "u", null_cond=setting.null_class), LossRecipe(**options)),
            ours_sample,
        )
        for options in DIGITS_RECIPE_VARIANTS
    ]
    rows = []
    for side in sides:
        rows.append([side.name, *setting.score(side, train_digits(setting, side))])
        print(f"digits-recipes {side.name}: {rows[-1][1:]}", flush=True)
    quality = Table(
        f"Digits 16x16, micro UNet, class-conditional (guidance 1), ours (u) with LossRecipe options: {DIGITS_QUALITY}",
        ["model", *DIGITS_COLUMNS],
        rows,
    )
    return [quality], digits_settings(setting, args)


#: Score columns of the quality tables that issue 17's targets compare, and whether higher is better.
TARGET_SCORES = {"rel. ED": False, "in squares": True, "FD": False}


def target_notes(quality: Table, ours: str = "ours (u)") -> list[str]:
    """Issue 17's target (our default recipe ahead of MeanFlow on every score of the section), each
    score met or missed and by how much, from the quality table's ``ours`` and MeanFlow rows."""
    rows = {row[0]: row for row in quality.rows}
    peer = next(name for name in rows if name.startswith("MeanFlow"))
    verdicts = []
    for column, name in enumerate(quality.columns):
        higher = next((h for key, h in TARGET_SCORES.items() if name.endswith(key)), None)
        if higher is None:
            continue
        mine, theirs = rows[ours][column], rows[peer][column]
        gap = (theirs - mine) if higher else (mine - theirs)
        verdict = "met" if gap < 0 else f"missed by {gap:.4g}"
        verdicts.append(f"{name}: {mine:.4g} against {theirs:.4g}, {verdict}")
    return [f"Target (issue 17): {ours} ahead of MeanFlow on every score. " + "; ".join(verdicts) + "."]


def run(argv: list[str]) -> Report:
    parser = argparse.ArgumentParser(prog="run.py peer", description=__doc__)
    parser.add_argument(
        "--section", choices=SECTIONS, default="toy", help="which comparison (each records its own section)"
    )
    parser.add_argument("--formulations", nargs="+", default=["u", "edm"], help="our side's formulations")
    parser.add_argument("--steps", type=int, default=2000, help="training steps of every toy model")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--n", type=int, default=5000, help="samples per toy evaluation")
    parser.add_argument("--timing-steps", type=int, default=10, help="steps per timing round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipe-seeds", type=int, nargs="+", default=[0, 1], help="training seeds of --section toy-recipes"
    )
    parser.add_argument(
        "--digits-steps", type=int, default=1500, help="digits training steps (at most the quick preset's)"
    )
    parser.add_argument("--digits-formulations", nargs="+", default=["u"], help="our side's formulations (digits)")
    parser.add_argument("--digits-n", type=int, default=1000, help="generated digits per evaluation")
    parser.add_argument("--quick", action="store_true", help="300 toy steps, 1000 samples: a smoke run")
    args = parser.parse_args(argv)
    require_peer()
    if args.quick:
        args.steps, args.n, args.timing_steps = 300, 1000, 2
        args.digits_steps, args.digits_n = 100, 200
    settings = {"peer": "rectified-flow-pytorch MeanFlow, its defaults"}
    ours = OURS_DEFAULTS_NOTE
    if args.section == "toy":
        tables, section_settings = toy_section(args)
        title, extra = "core defaults vs the public MeanFlow, checkerboard, plain MLP", [TOY_TRIED_NOTE]
        extra = [*target_notes(tables[0]), *extra]
    elif args.section == "toy-recipes":
        tables, section_settings = toy_recipes_section(args)
        title, ours, extra = "recipe variants vs the public MeanFlow, checkerboard, plain MLP", RECIPES_NOTE, []
    elif args.section == "digits-recipes":
        tables, section_settings = digits_recipes_section(args)
        title, ours, extra = "recipe variants vs the public MeanFlow, digits, micro UNet", DIGITS_RECIPES_NOTE, []
    else:
        quality, cost, section_settings = digits_section(args)
        tables, title = [quality, cost], "core defaults vs the public MeanFlow, digits, micro UNet"
        extra = target_notes(quality)
    return Report(
        name=f"peer-{args.section}",
        title=f"Peer: {title} (CPU)",
        settings=settings | section_settings,
        tables=tables,
        notes=[
            "Same network architecture and initial weights, batches, optimiser (the core trainer's: AdamW "
            "without weight decay, linear warm-up, gradient norm clipped at 1, EMA 0.999 with warm-up "
            "power 0.75) and number of steps on both sides; each side feeds the "
            "network its own times (ours: the formulation's (t, r); MeanFlow: (t, t - r), t = 1 noise).",
            ours,
            "MeanFlow's 2 steps: its average velocity over [1, 1/2] then [1/2, 0].",
            *extra,
        ],
    )
