"""FID through torchmetrics with a local Inception weights file (a random-weight stand-in)."""

from __future__ import annotations

import pytest
import torch
from cfm_core.cli import ConfigError
from cfm_core.trust import sha256_of
from cfm_image import fid as fid_module
from cfm_image.data import load_builtin
from cfm_image.fid import UNVERIFIED_OPTION, WEIGHTS_FILE, InceptionFID, inception_input


def test_inception_input_rounds_like_a_png_and_repeats_grey():
    grey = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0]).view(1, 1, 1, 5)
    pixels = inception_input(grey)
    assert pixels.dtype == torch.uint8 and pixels.shape == (1, 3, 1, 5)
    assert pixels[0, :, 0].tolist() == [[0, 64, 128, 255, 255]] * 3  # 63.75 -> 64, 127.5 -> 128
    rgb = torch.rand(2, 3, 4, 4) * 2 - 1
    assert torch.equal(inception_input(rgb), rgb.add(1).mul(127.5).round().to(torch.uint8))
    with pytest.raises(ValueError, match="expected images"):
        inception_input(torch.zeros(2, 2, 4, 4))


def _closed_form_fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID of features ``(n, D)`` with ``n << D``: ``tr((C_r C_f)^(1/2))`` is the nuclear norm
    of ``X_r X_f^T / sqrt((n_r - 1)(n_f - 1))`` (X centred), so no D x D matrix is needed."""
    xr, xf = real - real.mean(0), fake - fake.mean(0)
    nr, nf = real.shape[0] - 1, fake.shape[0] - 1
    trace_sqrt = torch.linalg.svdvals(xr @ xf.T).sum() / (nr * nf) ** 0.5
    mean_gap = (real.mean(0) - fake.mean(0)).square().sum()
    return float(mean_gap + xr.square().sum() / nr + xf.square().sum() / nf - 2 * trace_sqrt)


def test_fid_is_zero_on_the_reference_and_the_frechet_distance_of_inception_features(fake_inception_weights):
    digits = load_builtin("digits", 8, split="train").images[:4]  # 1 channel, 8x8
    inverted = -digits
    fid = InceptionFID(fake_inception_weights, verify=False)
    fid.set_reference(digits)
    assert fid(digits) == pytest.approx(0.0, abs=1e-3)
    different = fid(inverted)
    features = fid.features(torch.cat([digits, inverted]))
    assert features.shape == (8, 2048) and features.std(0).mean() > 1e-3  # not degenerate
    assert different > 0.5
    assert different == pytest.approx(_closed_form_fid(features[:4], features[4:]), rel=1e-4)


def test_a_missing_or_wrong_weights_file_names_the_option_and_the_file(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(ConfigError, match=f"--fid-weights: Inception weights file not found: {missing}"):
        InceptionFID(missing)
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"not a weights file")
    with pytest.raises(ConfigError, match=f"--fid-weights: {damaged} is not the published {WEIGHTS_FILE}"):
        InceptionFID(damaged)
    with pytest.raises(ConfigError, match=f"--fid-weights: {damaged} is not a plain tensor file"):
        InceptionFID(damaged, verify=False)
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(ConfigError, match=f"cannot load {other}"):
        InceptionFID(other, verify=False)


class _CreatesFile:
    """Unpickling this object opens (creates) a file: a stand-in for any code a pickle may run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("verify", [True, False], ids=["checked", "unverified"])
def test_a_crafted_pickle_as_fid_weights_runs_no_code(tmp_path, verify):
    marker = tmp_path / "marker"
    crafted = tmp_path / "crafted.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": _CreatesFile(marker)}, crafted)
    with pytest.raises(ConfigError, match="--fid-weights"):
        InceptionFID(crafted, verify=verify)
    assert not marker.exists()
    torch.load(crafted, weights_only=False)  # the file does run code when fully unpickled
    assert marker.exists()


def test_the_published_hash_lets_the_file_through_and_another_one_names_the_option_to_skip(
    fake_inception_weights, monkeypatch
):
    with pytest.raises(ConfigError, match=f"is not the published .*{UNVERIFIED_OPTION}"):
        InceptionFID(fake_inception_weights)
    monkeypatch.setattr(fid_module, "WEIGHTS_SHA256", sha256_of(fake_inception_weights))
    assert InceptionFID(fake_inception_weights).weights == fake_inception_weights
