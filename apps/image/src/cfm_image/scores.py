"""Scores of generated images against real ones.

* every dataset: the energy distance between flattened images (pixel space);
* labelled built-in data (digits): the Frechet distance in a digit classifier's feature space,
  the classifier's accuracy on class-conditional samples, and two class entropies (in nats):
  the mean entropy of each sample's predicted class distribution (low: clear digits) and the
  entropy of the histogram of predicted classes (high, up to ln 10: every digit appears);
* with a local Inception weights file: FID through torchmetrics (:mod:`cfm_image.fid`).
"""

from __future__ import annotations

import math

import torch
from cfm_core.metrics import energy_distance, frechet_distance_from_features
from torch import Tensor

from cfm_image.classifier import DigitClassifier
from cfm_image.fid import InceptionFID

PIXEL_REFERENCE = 2000
"""At most this many real images enter the pixel energy distance."""


def entropy(probabilities: Tensor) -> Tensor:
    """Entropy in nats of each row of ``probabilities`` ``(N, K)`` (0 log 0 = 0)."""
    p = probabilities.clamp_min(0)
    return -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1)


def class_scores(logits: Tensor, labels: Tensor | None = None) -> dict[str, float]:
    """``class_entropy_mean``, ``class_entropy_marginal`` (nats) and, with ``labels``, the
    ``classifier_accuracy`` of a classifier's ``logits`` ``(N, K)`` on generated images."""
    probabilities = logits.float().softmax(-1)
    predicted = probabilities.argmax(-1)
    histogram = torch.bincount(predicted, minlength=logits.shape[-1]).float()
    scores = {
        "class_entropy_mean": float(entropy(probabilities).mean()),
        "class_entropy_marginal": float(entropy(histogram / histogram.sum())),
    }
    if labels is not None:
        hits = predicted == labels.to(predicted.device)
        scores["classifier_accuracy"] = float(hits.float().mean())
    return scores


@torch.no_grad()
def _batched(fn, images: Tensor, batch_size: int = 1000) -> Tensor:
    starts = range(0, images.shape[0], batch_size)
    return torch.cat([fn(images[i : i + batch_size]) for i in starts])


class ImageScorer:
    """Scores generated images ``(N, C, H, W)`` in ``[-1, 1]`` against ``real`` images.

    Args:
        real: the reference images.
        classifier: a digit classifier (its features and classes are scored), or ``None``.
        fid: an :class:`InceptionFID` (its reference becomes ``real``), or ``None``.
    """

    def __init__(
        self, real: Tensor, classifier: DigitClassifier | None = None, fid: InceptionFID | None = None
    ) -> None:
        self.real_pixels = real[:PIXEL_REFERENCE].flatten(1)
        self.classifier, self.fid = classifier, fid
        self.real_features = None
        if classifier is not None:
            self.real_features = _batched(classifier.features, real)
        if fid is not None:
            fid.set_reference(real)

    def __call__(self, images: Tensor, labels: Tensor | None = None, frechet: bool = True) -> dict[str, float]:
        """The scores of ``images`` (NaN everywhere when any value is not finite); ``labels``
        are the classes they were generated for; ``frechet=False`` leaves out the Frechet
        distances (classifier_fd, fid), which mostly measure sample size on a small set."""
        names = self.metric_names(labels is not None, frechet)
        if not torch.isfinite(images).all():
            return dict.fromkeys(names, math.nan)
        images = images.clamp(-1, 1)
        scores = {"pixel_energy": energy_distance(images.flatten(1), self.real_pixels)}
        if self.classifier is not None:
            features = _batched(self.classifier.features, images)
            if frechet:
                scores["classifier_fd"] = frechet_distance_from_features(features, self.real_features)
            logits = self.classifier.head(features)
            scores.update(class_scores(logits, labels))
        if self.fid is not None and frechet:
            scores["fid"] = self.fid(images)
        return {name: scores[name] for name in names}

    def metric_names(self, conditional: bool, frechet: bool = True) -> list[str]:
        """The names of the scores, in report order (without the Frechet distances when
        ``frechet`` is false)."""
        names = []
        if self.classifier is not None:
            names += ["classifier_fd"] * frechet + ["classifier_accuracy"] * conditional
            names += ["class_entropy_mean", "class_entropy_marginal"]
        if self.fid is not None and frechet:
            names.append("fid")
        return names + ["pixel_energy"]

    @property
    def primary(self) -> str:
        """The headline metric: classifier_fd, else fid, else pixel_energy (lower is better)."""
        return self.metric_names(False)[0]
