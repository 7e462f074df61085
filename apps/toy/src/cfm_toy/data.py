"""2-D toy distributions for fast checks of every formulation.

Every distribution is centred at the origin and scaled *isotropically* (shapes are not stretched)
so that the mean per-coordinate variance ``(Var x + Var y) / 2`` is 1, the scale of the standard
normal noise. The two coordinates may still differ in variance and correlate a little:

* ``"checkerboard"``: uniform on the 8 dark squares of a 4 x 4 board; both marginals are uniform
  with variance exactly 1 (correlation 0.19).
* ``"eight_gaussians"``: 8 equally weighted Gaussians (std 0.1) on a circle of radius
  ``sqrt(2 (1 - 0.1^2))``; covariance exactly the identity.
* ``"two_moons"``: two interleaved half circles with Gaussian noise (std 0.1 before scaling);
  the variances (about 1.5 and 0.5) follow in closed form.
* ``"spirals"``: two interleaved Archimedean spirals of 1.5 turns, points uniform in area
  (radius ``2 sqrt(1 - 0.08^2) sqrt(U)``), Gaussian noise std 0.08.
* ``"gaussian_mixture"``: three anisotropic Gaussians with unequal weights; its exact mean and
  covariance come from :func:`gaussian_mixture_moments` (for Frechet-distance checks).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

_EIGHT_GAUSSIANS_STD = 0.1
_MOONS_NOISE = 0.1
_SPIRAL_NOISE = 0.08
_SPIRAL_TURNS = 1.5

# The raw mixture (weights, means, covariances) before centring and scaling.
_MIXTURE_WEIGHTS = (0.5, 0.3, 0.2)
_MIXTURE_MEANS = ((-1.0, -0.5), (1.2, 0.3), (0.0, 1.5))
_MIXTURE_COVS = (((0.3, 0.1), (0.1, 0.2)), ((0.15, -0.05), (-0.05, 0.3)), ((0.1, 0.0), (0.0, 0.1)))


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, device=_device(generator), dtype=torch.float64)


def _normal(*shape: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn(*shape, generator=generator, device=_device(generator), dtype=torch.float64)


def _integers(high: int, n: int, generator: torch.Generator | None) -> Tensor:
    return torch.randint(high, (n,), generator=generator, device=_device(generator))


def _checkerboard(n: int, generator: torch.Generator | None) -> Tensor:
    column = _integers(4, n, generator)
    row = 2 * _integers(2, n, generator) + column % 2  # dark squares: column + row even
    cell = torch.stack([column, row], dim=1).double()
    within = torch.stack([_uniform(n, generator), _uniform(n, generator)], dim=1)
    return (cell + within - 2.0) * math.sqrt(3.0 / 4.0)  # uniform on [-2, 2]: variance 4/3


def _eight_gaussians(n: int, generator: torch.Generator | None) -> Tensor:
    std = _EIGHT_GAUSSIANS_STD
    radius = math.sqrt(2.0 * (1.0 - std**2))  # per-coordinate variance radius^2/2 + std^2 = 1
    angle = _integers(8, n, generator).double() * (math.pi / 4)
    centres = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centres + std * _normal(n, 2, generator=generator)


def _two_moons(n: int, generator: torch.Generator | None) -> Tensor:
    theta = math.pi * _uniform(n, generator)
    upper = torch.stack([theta.cos(), theta.sin()], dim=1)
    lower = torch.stack([1.0 - theta.cos(), 0.5 - theta.sin()], dim=1)
    is_lower = (_integers(2, n, generator) == 1)[:, None]
    points = torch.where(is_lower, lower, upper) + _MOONS_NOISE * _normal(n, 2, generator=generator)
    # Closed-form moments of the raw moons: mean (1/2, 1/4), variances 3/4 and 9/16 - 1/pi.
    mean_variance = 0.5 * (0.75 + 9.0 / 16.0 - 1.0 / math.pi) + _MOONS_NOISE**2
    return (points - points.new_tensor([0.5, 0.25])) / math.sqrt(mean_variance)


def _spirals(n: int, generator: torch.Generator | None) -> Tensor:
    progress = _uniform(n, generator).sqrt()  # uniform density in area
    radius = 2.0 * math.sqrt(1.0 - _SPIRAL_NOISE**2) * progress  # E[radius^2]/2 + noise^2 = 1
    angle = 2 * math.pi * _SPIRAL_TURNS * progress + math.pi * _integers(2, n, generator).double()
    points = radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
    return points + _SPIRAL_NOISE * _normal(n, 2, generator=generator)


def _mixture_moments(weights: Tensor, means: Tensor, covs: Tensor) -> tuple[Tensor, Tensor]:
    """``mean = sum_k w_k mu_k``, ``cov = sum_k w_k (Sigma_k + mu_k mu_k^T) - mean mean^T``."""
    mean = weights @ means
    second = torch.einsum("k,kij->ij", weights, covs + means[:, :, None] * means[:, None, :])
    return mean, second - torch.outer(mean, mean)


def gaussian_mixture_components() -> tuple[Tensor, Tensor, Tensor]:
    """The ``"gaussian_mixture"`` distribution: weights ``(3,)``, means ``(3, 2)`` and
    covariances ``(3, 2, 2)``, float64, after centring and scaling."""
    weights, means, covs = (
        torch.tensor(v, dtype=torch.float64) for v in (_MIXTURE_WEIGHTS, _MIXTURE_MEANS, _MIXTURE_COVS)
    )
    raw_mean, raw_cov = _mixture_moments(weights, means, covs)
    scale = 1.0 / math.sqrt(float(raw_cov.trace()) / 2)
    return weights, (means - raw_mean) * scale, covs * scale**2


def gaussian_mixture_moments() -> tuple[Tensor, Tensor]:
    """Exact mean ``(2,)`` (zero) and covariance ``(2, 2)`` (trace 2) of ``"gaussian_mixture"``,
    float64, in closed form from :func:`gaussian_mixture_components`."""
    return _mixture_moments(*gaussian_mixture_components())


def _gaussian_mixture(n: int, generator: torch.Generator | None) -> Tensor:
    weights, means, covs = (v.to(_device(generator)) for v in gaussian_mixture_components())
    component = torch.multinomial(weights, n, replacement=True, generator=generator)
    factors = torch.linalg.cholesky(covs)[component]
    z = _normal(n, 2, generator=generator)
    return means[component] + (factors @ z[:, :, None])[:, :, 0]


_SAMPLERS: dict[str, Callable[[int, torch.Generator | None], Tensor]] = {
    "checkerboard": _checkerboard,
    "eight_gaussians": _eight_gaussians,
    "two_moons": _two_moons,
    "spirals": _spirals,
    "gaussian_mixture": _gaussian_mixture,
}
#: Names accepted by :func:`sample_toy`.
TOY_DISTRIBUTIONS: tuple[str, ...] = tuple(_SAMPLERS)


def sample_toy(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` samples ``(n, 2)`` (float32) of the toy distribution ``name``.

    Args:
        name: one of :data:`TOY_DISTRIBUTIONS`.
        n: number of samples (positive).
        generator: the random source (the samples land on its device); ``None`` uses torch's
            global generator on the CPU.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown toy distribution {name!r}; choose one of {TOY_DISTRIBUTIONS}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return _SAMPLERS[name](n, generator).float()
