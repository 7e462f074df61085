"""A small CNN classifier of the built-in digits: the feature space of the digits' metrics.

It is trained once, deterministically (fixed seed, fixed order, fixed augmentation), on the
training split of the built-in dataset at the model's resolution, then cached as a safetensors
file named by the dataset, the resolution and a hash of the training recipe. Its 64 hidden
features stand in for Inception's in a Frechet distance; its class probabilities give the
accuracy on class-conditional samples and the class entropies.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from cfm_core.io import atomic_path
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from cfm_image.data import load_builtin


@dataclass(frozen=True)
class ClassifierRecipe:
    """How the classifier is trained (part of the cache key)."""

    width: int = 32
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    shift: int = 1
    """Random translation of up to this many pixels (augmentation)."""
    seed: int = 0
    version: int = 2

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


class DigitClassifier(nn.Module):
    """Three 3x3 convolutions (the last two with stride 2) with ReLU, average pooling to 4x4, a
    hidden layer of ``2 * width`` features with ReLU, and a linear layer to the class logits.

    ``features(x)`` is the hidden ``(B, 2 * width)`` representation; ``forward(x)`` the logits.
    """

    def __init__(self, channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 2 * width),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def _shifted(images: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Every image moved by its own random offset in ``[-shift, shift]^2`` (background fill)."""
    if shift == 0:
        return images
    side = images.shape[-1]
    padded = F.pad(images, (shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * shift + 1, (images.shape[0], 2), generator=generator)
    return torch.stack(
        [p[:, dy : dy + side, dx : dx + side] for p, (dy, dx) in zip(padded, offsets.tolist(), strict=True)]
    )


def train_classifier(
    images: Tensor, labels: Tensor, num_classes: int, recipe: ClassifierRecipe = ClassifierRecipe()
) -> DigitClassifier:
    """Train a :class:`DigitClassifier` on ``images`` in ``[-1, 1]`` (CPU, deterministic)."""
    generator = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    model = DigitClassifier(images.shape[1], num_classes, recipe.width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr)
    batches = -(-images.shape[0] // recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.epochs * batches)
    for _ in tqdm(range(recipe.epochs), desc="training the digit classifier", unit="epoch", leave=False):
        order = torch.randperm(images.shape[0], generator=generator)
        for start in range(0, images.shape[0], recipe.batch_size):
            index = order[start : start + recipe.batch_size]
            x = _shifted(images[index], recipe.shift, generator)
            loss = F.cross_entropy(model(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def accuracy(model: DigitClassifier, images: Tensor, labels: Tensor) -> float:
    """The share of ``images`` whose predicted class is ``labels``."""
    return float((model(images).argmax(1) == labels).float().mean())


def default_cache_dir() -> Path:
    """``$CFM_CACHE_DIR``, else ``$XDG_CACHE_HOME/cfm``, else ``~/.cache/cfm``."""
    if os.environ.get("CFM_CACHE_DIR"):
        return Path(os.environ["CFM_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cfm"


@dataclass
class CachedClassifier:
    """A trained classifier with what it was measured at."""

    model: DigitClassifier
    path: Path
    test_accuracy: float


def builtin_classifier(
    name: str,
    resolution: int,
    cache_dir: str | os.PathLike | None = None,
    recipe: ClassifierRecipe = ClassifierRecipe(),
) -> CachedClassifier:
    """The classifier of built-in dataset ``name`` at ``resolution``, from the cache or trained
    now (and cached) on its training split; its accuracy is measured on the test split."""
    train = load_builtin(name, resolution, split="train")
    if train.num_classes is None:
        raise ValueError(f"the built-in {name} images carry no labels: no classifier to train")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / "image" / f"classifier-{name}-{resolution}px-{recipe.key()}.safetensors"
    model = DigitClassifier(train.channels, train.num_classes, recipe.width)
    if path.is_file():
        try:
            model.load_state_dict(load_file(path))
            model = model.eval().requires_grad_(False)
        except (OSError, RuntimeError, SafetensorError) as err:
            raise ValueError(f"the cached classifier {path} is unreadable ({err}); delete it") from None
    else:
        print(f"training the {name} classifier once (cached in {path})")
        model = train_classifier(train.images, train.labels, train.num_classes, recipe)
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    test = load_builtin(name, resolution, split="test")
    return CachedClassifier(model, path, accuracy(model, test.images, test.labels))
