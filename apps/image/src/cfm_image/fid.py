"""FID of generated images: torchmetrics' ``FrechetInceptionDistance`` with a local weights file.

torchmetrics builds the FID Inception-v3 network from the torch-fidelity package and reads its
weights from the file the user gives (``--fid-weights``), so nothing is downloaded. The file is
torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` (the TensorFlow FID network
``pt_inception-2015-12-05`` converted to PyTorch). Images in ``[-1, 1]`` are rounded to 8 bits
as a PNG would store them, grey images are repeated to three channels, and torchmetrics resizes
every image to 299x299 (bilinear) before the network; the 2048 pool features enter the Frechet
distance.

The file is a pickle, and unpickling a file can run code, so :class:`InceptionFID` checks its
SHA-256 against the published file's before anything reads it. With ``verify=False``
(``--allow-unverified-fid-weights``) another file is accepted but read only as plain tensors
(``torch.load(weights_only=True)``) and re-saved for torchmetrics, so it cannot run code either.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from cfm_core.cli import ConfigError
from cfm_core.cli.common import require_path
from cfm_core.trust import load_plain_tensors, require_sha256
from torch import Tensor
from tqdm.auto import tqdm

WEIGHTS_OPTION = "--fid-weights"
"""The command-line option that names the weights file."""
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
"""torch-fidelity's name of the Inception-v3 FID weights."""
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
"""SHA-256 of the published file (torch-fidelity's and pytorch-fid's copies are the same bytes;
the ``6726825d`` in its name is the start of this hash)."""
UNVERIFIED_OPTION = "--allow-unverified-fid-weights"
"""The option that accepts a weights file other than the published one."""
BATCH_SIZE = 50
"""Images per Inception forward pass."""
SKIP_REASON = (
    f"no Inception weights given. FID needs a local copy of torch-fidelity's "
    f"Inception-v3 weights ({WEIGHTS_FILE}) and nothing is downloaded; enable it "
    f"with {WEIGHTS_OPTION} PATH"
)
"""Why FID was not computed, and how to enable it (printed and recorded)."""


def inception_input(images: Tensor) -> Tensor:
    """Images ``(N, 1 or 3, H, W)`` in ``[-1, 1]`` as the FID network's input: ``uint8`` RGB
    ``(N, 3, H, W)``, each value rounded as in a PNG, grey repeated to three channels."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W), got {tuple(images.shape)}")
    pixels = images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels


class InceptionFID:
    """FID against reference images, with the Inception weights read from ``weights``.

    The file is loaded here, so a missing or wrong file fails at once with a
    :class:`ConfigError` naming ``--fid-weights`` and the file. Set the real images with
    :meth:`set_reference`, then call the object on generated images.
    """

    def __init__(self, weights: str | Path, device: torch.device | str = "cpu", *, verify: bool = True) -> None:
        self.weights = require_path(weights, "Inception weights file", WEIGHTS_OPTION)
        if verify:
            require_sha256(
                self.weights, WEIGHTS_SHA256, WEIGHTS_OPTION, f"the published {WEIGHTS_FILE}", UNVERIFIED_OPTION
            )
            metric = self._metric(self.weights)
        else:
            state = load_plain_tensors(self.weights, WEIGHTS_OPTION)
            with tempfile.TemporaryDirectory(prefix="cfm-fid-") as folder:
                plain = Path(folder) / "weights.pth"
                torch.save(state, plain)  # holds tensors only: safe for torchmetrics' full unpickling
                metric = self._metric(plain)
        self.metric = metric.to(device)
        self.reference_size = 0

    def _metric(self, path: Path):
        from torchmetrics.image.fid import FrechetInceptionDistance

        try:
            return FrechetInceptionDistance(
                feature=2048, normalize=False, reset_real_features=False, feature_extractor_weights_path=str(path)
            )
        except Exception as err:  # load_state_dict on a wrong or damaged file
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise ConfigError(
                f"{WEIGHTS_OPTION}: cannot load {self.weights} as torch-fidelity's Inception-v3 "
                f"weights ({WEIGHTS_FILE}): {reason}"
            ) from None

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """The 2048 Inception pool features ``(N, 2048)`` of images in ``[-1, 1]``."""
        return torch.cat([self.metric.inception(batch).double() for batch in self._batches(images)])

    def set_reference(self, real: Tensor) -> None:
        """Use ``real`` (images in ``[-1, 1]``) as the reference distribution."""
        self.metric.reset_real_features = True
        self.metric.reset()
        self.metric.reset_real_features = False
        self._update(real, real=True)
        self.reference_size = real.shape[0]

    def __call__(self, images: Tensor) -> float:
        """FID of ``images`` (in ``[-1, 1]``, at least two) against the reference."""
        if self.reference_size < 2:
            raise RuntimeError("InceptionFID: set_reference with at least two images first")
        self.metric.reset()  # keeps the reference features
        self._update(images, real=False)
        return float(self.metric.compute())

    def _batches(self, images: Tensor):
        device = self.metric.device
        for start in tqdm(range(0, images.shape[0], BATCH_SIZE), desc="Inception features", unit="batch", leave=False):
            yield inception_input(images[start : start + BATCH_SIZE]).to(device)

    @torch.no_grad()
    def _update(self, images: Tensor, real: bool) -> None:
        for batch in self._batches(images):
            self.metric.update(batch, real=real)
