"""Time-features benchmark: the one-step map of a plain MLP with high- and low-frequency time
features, trained with the exact derivative (the JVP) and with the finite difference (the default).

The network is ``[x, emb(t), emb(r)] -> 128 -> 128 -> 2`` (SiLU), its time features DDPM's
sinusoids at scale 1000, Fourier features at scale 16 (NCSN++) or sinusoids at scale 10 (the
library's default). The data is the Gaussian ``N((1, -0.5), diag(0.25, 2.25))``, so the exact flow
map is known (:class:`~cfm_core.oracle.GaussianOracle`). Training goes through the public API
(``FlowMap``, ``CFMLoss``, ``LossRecipe``) with every option at its default but those
:data:`RECIPES` names; Adam, gradient clipping at 1, batch 256, default formulation options. Quality is the one-step
energy distance to held-out data divided by the noise's (1: no better than the noise), and the
one-step map's mean absolute error against the exact flow map.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from cfm_core import CFMLoss, FlowMap, LossRecipe
from cfm_core.metrics import energy_distance
from cfm_core.nn import FourierTimeEmbedding, SinusoidalTimeEmbedding
from cfm_core.oracle import GaussianOracle
from harness import Report, Table
from torch import nn

FORMULATIONS = ("u", "x1", "edm", "ddim")
MEAN = torch.tensor([1.0, -0.5])
STD = torch.tensor([0.5, 1.5])
EMBEDDING_DIM = 32
#: The networks' time features, by name.
TIME_FEATURES: dict[str, Callable[[], nn.Module]] = {
    "ddpm-sinusoidal-1000": lambda: SinusoidalTimeEmbedding(EMBEDDING_DIM, scale=1000.0),
    "fourier-16": lambda: FourierTimeEmbedding(EMBEDDING_DIM, scale=16.0),
    "sinusoidal-10": lambda: SinusoidalTimeEmbedding(EMBEDDING_DIM, scale=10.0),
}
DIVERGED = "diverged"
#: The recipes compared: the paper's objective (the exact derivative, plain L2), the exact derivative
#: with the default weighting (alone, without DDIM's adaptive weight, with MeanFlow's adaptive weight
#: for all), the secant at three steps (0.05: the default), the central secant, and MeanFlow's time law
#: and adaptive weight with the default secant. Every other option is at its default.
RECIPES: dict[str, LossRecipe] = {
    "jvp, plain L2 (the paper's objective)": LossRecipe(derivative="jvp", field_weighting="none", adaptive_p=0.0),
    "jvp": LossRecipe(derivative="jvp"),
    "jvp, no adaptive weight": LossRecipe(derivative="jvp", adaptive_p=0.0),
    "jvp, adaptive weight p = 1": LossRecipe(derivative="jvp", adaptive_p=1.0),
    "finite difference 0.01": LossRecipe(fd_step=0.01),
    "finite difference 0.05 (default)": LossRecipe(),
    "finite difference 0.1": LossRecipe(fd_step=0.1),
    "central difference 0.05": LossRecipe(fd_scheme="central"),
    "finite difference 0.05, MeanFlow's time law, adaptive weight p = 0.5": LossRecipe(
        time_sampler="logit_normal", logit_normal=(0.4, 1.0), adaptive_p=0.5
    ),
}


#: Recipes that differ from the ``jvp`` row for some formulations only run for those (the other
#: cells stay empty): u has no field weight to drop, and DDIM's default adaptive weight is p = 1.
ONLY_FOR: dict[str, tuple[str, ...]] = {
    "jvp, plain L2 (the paper's objective)": ("x1", "edm", "ddim"),
    "jvp, no adaptive weight": ("ddim",),
    "jvp, adaptive weight p = 1": ("u", "x1", "edm"),
}


class PlainTimeMLP(nn.Module):
    """``net(x, t, r)``: an MLP on the point and the time features of ``t`` and ``r``."""

    def __init__(self, features: str, hidden: int = 128) -> None:
        super().__init__()
        self.emb_t, self.emb_r = TIME_FEATURES[features](), TIME_FEATURES[features]()
        self.mlp = nn.Sequential(
            nn.Linear(2 + 2 * EMBEDDING_DIM, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x, t, r, cond=None):
        return self.mlp(torch.cat([x, self.emb_t(t), self.emb_r(r)], 1))


def _data(n: int, generator: torch.Generator) -> torch.Tensor:
    return MEAN + STD * torch.randn(n, 2, generator=generator)


def _train(formulation: str, features: str, recipe: LossRecipe, steps: int, lr: float, seed: int) -> FlowMap | None:
    """The trained model, or None when its loss turned non-finite."""
    torch.manual_seed(seed)
    model = FlowMap(PlainTimeMLP(features), formulation)
    loss_fn = CFMLoss(model, recipe)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    data = torch.Generator().manual_seed(10_000 + seed)
    for _ in range(steps):
        try:
            loss = loss_fn(_data(256, data))
        except FloatingPointError:  # the loss diverged
            return None
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model


def _scores(
    model: FlowMap | None, noise: torch.Tensor, held_out: torch.Tensor, noise_distance: float
) -> tuple[float | str, float | str]:
    """The one-step energy distance relative to the noise's, and the mean absolute error against the
    exact flow map ("diverged" for a model whose loss or samples turned non-finite)."""
    if model is None:
        return DIVERGED, DIVERGED
    f = model.formulation
    with torch.no_grad():
        one_step = model.sample(noise, steps=1)
    n = noise.shape[0]
    start, end = torch.full((n,), f.t_noise), torch.full((n,), f.t_data)
    exact = GaussianOracle(f, MEAN, torch.diag(STD**2)).flow_map(f.prior(noise), start, end)
    if not torch.isfinite(one_step).all():
        return DIVERGED, DIVERGED
    return energy_distance(one_step, held_out) / noise_distance, (one_step - exact).abs().mean().item()


def run(argv: list[str]) -> Report:
    parser = argparse.ArgumentParser(prog="run.py time_features", description=__doc__)
    parser.add_argument("--steps", type=int, default=800, help="training steps of every model")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n", type=int, default=4000, help="samples per evaluation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--formulations", nargs="+", default=list(FORMULATIONS), choices=FORMULATIONS)
    parser.add_argument("--features", nargs="+", default=list(TIME_FEATURES), choices=list(TIME_FEATURES))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--quick", action="store_true", help="100 steps, 1000 samples, seed 0: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.n, args.seeds = 100, 1000, [0]

    gen = torch.Generator().manual_seed(1234)
    noise = torch.randn(args.n, 2, generator=gen)
    held_out = _data(args.n, gen)
    noise_distance = energy_distance(noise, held_out)
    floor = energy_distance(_data(args.n, gen), held_out) / noise_distance

    distance_rows, error_rows, trained = [], [], 0
    started = time.perf_counter()
    for features in args.features:
        for recipe in args.recipes:
            for seed in args.seeds:
                distances, errors = [], []
                for formulation in args.formulations:
                    if formulation not in ONLY_FOR.get(recipe, FORMULATIONS):
                        distances.append("")
                        errors.append("")
                        continue
                    trained += 1
                    model = _train(formulation, features, RECIPES[recipe], args.steps, args.lr, seed)
                    distance, error = _scores(model, noise, held_out, noise_distance)
                    distances.append(distance)
                    errors.append(error)
                    print(f"{features}, {recipe}, seed {seed}, {formulation}: {distance} / {error}", flush=True)
                distance_rows.append([features, recipe, seed, *distances])
                error_rows.append([features, recipe, seed, *errors])
    seconds = time.perf_counter() - started

    columns = ["time features", "recipe", "seed", *args.formulations]
    return Report(
        name="time-features",
        title="Time features: the exact derivative against the finite difference (plain MLP, Gaussian data)",
        settings={
            "net": f"[x, emb(t), emb(r)] -> 128 -> 128 -> 2, SiLU, {EMBEDDING_DIM} time features each",
            "data": "N((1, -0.5), diag(0.25, 2.25))",
            "steps": args.steps,
            "batch": 256,
            "optimizer": f"Adam lr {args.lr}, gradient clipping at 1",
            "recipes": "LossRecipe defaults but the options named",
            "formulation_options": "defaults",
            "n": args.n,
            "seeds": args.seeds,
        },
        tables=[
            Table(
                "One-step energy distance to held-out data relative to the noise's (lower is better; fresh "
                f"data scores {floor:.2g}: the metric's noise floor, an unbiased estimate that can be negative)",
                columns,
                distance_rows,
            ),
            Table("One-step map: mean absolute error against the exact flow map (data units)", columns, error_rows),
        ],
        notes=[
            "jvp: the exact total time derivative (the paper's); plain L2: no field weighting and no adaptive "
            "weight, the paper's objective; an empty cell: the recipe is the jvp row's for that formulation "
            "(u has no field weight; DDIM's default adaptive weight is p = 1); finite difference: the secant "
            "over fd_step along the instantaneous flow (0.05 is the default); central difference: the secant "
            "from fd_step back to fd_step forward (fd_scheme central); MeanFlow's time law: logit-normal "
            "times, (0.4, 1.0) in unit time. Every other option at its default: uniform times, normalised "
            "field weighting, DDIM's adaptive weight p = 1.",
            "Time features: DDPM's sinusoids at scale 1000, Fourier features at scale 16 (NCSN++), "
            "sinusoids at scale 10 (the cfm_core.nn default).",
            f"Training and evaluation of all {trained} models took "
            f"{seconds / 60:.1f} min (one process, torch threads: {torch.get_num_threads()}).",
        ],
    )
