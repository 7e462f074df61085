"""Image scores, the digit classifier and its cache, grids, labels, and guidance with the UNet."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from cfm_core.cli import ConfigError, config_to_dict
from cfm_core.io import atomic_path
from cfm_image import classifier as classifier_module
from cfm_image.classifier import ClassifierRecipe, builtin_classifier, train_classifier
from cfm_image.commands import build_model, generation_labels
from cfm_image.config import ImageDataConfig, ImageNetConfig, ImageTrainConfig
from cfm_image.data import load_builtin
from cfm_image.pictures import image_grid
from cfm_image.scores import ImageScorer, class_scores, entropy
from scipy.stats import entropy as scipy_entropy

FAST = ClassifierRecipe(epochs=4, width=16, lr=5e-3)


def test_entropy_matches_scipy():
    probabilities = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    expected = [scipy_entropy(p) for p in probabilities.numpy()]
    np.testing.assert_allclose(entropy(probabilities).numpy(), expected, rtol=1e-6)


def test_class_scores_closed_forms():
    uniform = class_scores(torch.zeros(6, 10), labels=torch.zeros(6, dtype=torch.long))
    assert uniform["class_entropy_mean"] == pytest.approx(math.log(10))
    assert uniform["class_entropy_marginal"] == pytest.approx(0.0)  # argmax is always class 0
    assert uniform["classifier_accuracy"] == 1.0
    confident = class_scores(40 * torch.eye(10)[[0, 1, 2, 3]], labels=torch.tensor([0, 1, 2, 0]))
    assert confident["class_entropy_mean"] == pytest.approx(0.0, abs=1e-6)
    assert confident["class_entropy_marginal"] == pytest.approx(math.log(4))
    assert confident["classifier_accuracy"] == 0.75
    assert "classifier_accuracy" not in class_scores(torch.zeros(3, 10))


def test_classifier_training_is_deterministic_and_learns():
    train = load_builtin("digits", 8, split="train")
    test = load_builtin("digits", 8, split="test")
    first = train_classifier(train.images, train.labels, 10, FAST)
    second = train_classifier(train.images, train.labels, 10, FAST)
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name
    accuracy = (first(test.images).argmax(1) == test.labels).float().mean()
    assert accuracy > 0.6  # four epochs of a narrow net: far above chance (0.1)


def test_classifier_cache_is_reused_and_keyed_by_recipe(tmp_path, monkeypatch):
    calls = []
    real_train = classifier_module.train_classifier
    monkeypatch.setattr(classifier_module, "train_classifier", lambda *a: calls.append(a[-1]) or real_train(*a))
    first = builtin_classifier("digits", 8, tmp_path, FAST)
    again = builtin_classifier("digits", 8, tmp_path, FAST)
    assert len(calls) == 1 and first.path == again.path and first.path.is_file()
    x = load_builtin("digits", 8, split="test").images[:5]
    assert torch.equal(first.model(x), again.model(x))
    assert first.test_accuracy == again.test_accuracy
    other = builtin_classifier("digits", 8, tmp_path, ClassifierRecipe(epochs=1, width=16))
    assert other.path != first.path and len(calls) == 2
    first.path.write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="delete it"):
        builtin_classifier("digits", 8, tmp_path, FAST)
    with pytest.raises(ValueError, match="no labels"):
        builtin_classifier("faces", 8, tmp_path, FAST)


def test_scorer_frechet_is_zero_on_the_reference_and_nan_on_nan(tmp_path):
    images = load_builtin("digits", 8, split="train").images[:300]
    model = train_classifier(images, load_builtin("digits", 8).labels[:300], 10, FAST)
    scorer = ImageScorer(images, model)
    same = scorer(images)
    assert same["classifier_fd"] == pytest.approx(0.0, abs=1e-6)
    assert scorer.primary == "classifier_fd"
    noise = scorer(torch.rand_like(images) * 2 - 1)
    assert noise["classifier_fd"] > 1.0 and noise["pixel_energy"] > same["pixel_energy"]
    broken = images.clone()
    broken[0, 0, 0, 0] = math.nan
    assert all(math.isnan(v) for v in scorer(broken, torch.zeros(300, dtype=torch.long)).values())
    assert ImageScorer(images).primary == "pixel_energy"


def test_image_grid_layout():
    images = torch.stack([torch.full((1, 2, 3), v) for v in (-1.0, 0.0, 1.0)])
    grid = image_grid(images, nrow=2, padding=1)
    assert grid.shape == (1, 2 * 3 + 1, 2 * 4 + 1)
    assert torch.all(grid[:, 1:3, 1:4] == -1) and torch.all(grid[:, 1:3, 5:8] == 0)
    assert torch.all(grid[:, 4:6, 1:4] == 1) and torch.all(grid[:, 4:6, 5:8] == 1)  # white pad
    assert torch.all(grid[:, 0] == 1) and torch.all(grid[:, 3] == 1)
    nan = image_grid(torch.full((1, 1, 2, 2), math.nan), padding=0)
    assert torch.all(nan == 0)  # NaN is drawn grey


def test_generation_labels():
    assert generation_labels(3, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert generation_labels(10, 4, labels=(7, 2)).tolist() == [7, 2, 7, 2]
    assert generation_labels(10, 2, unconditional=True).tolist() == [10, 10]
    assert generation_labels(None, 5) is None
    with pytest.raises(ConfigError, match="out of range"):
        generation_labels(10, 4, labels=(10,))
    with pytest.raises(ConfigError, match="unconditional"):
        generation_labels(None, 4, labels=(1,))


def _conditional_model(formulation: str):
    base = ImageTrainConfig()
    cfg = replace(
        base,
        data=ImageDataConfig(resolution=8, channels=1, num_classes=10),
        net=ImageNetConfig(preset="micro", base_channels=8),
        method=replace(base.method, formulation=formulation),
    )
    torch.manual_seed(0)
    loss_fn = build_model(config_to_dict(cfg)).eval()
    with torch.no_grad():  # wake the zero-initialised output layers
        for parameter in loss_fn.parameters():
            if not parameter.any():
                parameter.normal_(0, 0.05)
    return loss_fn


@pytest.mark.parametrize("formulation", ["u", "ddim"])
def test_classifier_free_guidance_is_the_extrapolated_field(formulation):
    loss_fn = _conditional_model(formulation)
    model = loss_fn.model
    assert int(model.null_cond) == 10 and loss_fn.recipe.cond_dropout == pytest.approx(0.1)
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 5, 5, 9])
    with torch.no_grad():
        conditional = model.sample(noise, 1, cond=labels)
        null = model.sample(noise, 1, cond=torch.full((4,), 10))
        guided = model.sample(noise, 1, cond=labels, guidance=3.0)
    assert not torch.allclose(conditional, null)
    # one jump is affine in the field, so guidance 3 extrapolates the two samples
    torch.testing.assert_close(guided, null + 3.0 * (conditional - null), rtol=1e-4, atol=1e-4)


def test_label_dropout_uses_the_null_class():
    model = _conditional_model("u").train()
    torch.manual_seed(0)
    dropped = model._drop_condition(torch.zeros(4000, dtype=torch.long), 4000, torch.device("cpu"))
    assert set(dropped.unique().tolist()) == {0, 10}
    assert (dropped == 10).float().mean() == pytest.approx(0.1, abs=0.02)


def test_atomic_path_replaces_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o044  # readable by others, as open() would make it
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]
