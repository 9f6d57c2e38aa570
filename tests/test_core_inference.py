"""Self-ensemble, tiled forward and image-folder inference against explicit, independent computations."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from srode_plugins.inference import read_image, self_ensemble, tiled_forward, upsample_images


class NearestUpsampler(nn.Module):
    """Nearest-neighbour upsampling as an SR arch: commutes exactly with every flip and quarter turn."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")


class TinyConvSR(nn.Module):
    """Two 3x3 convs then a pixel shuffle: receptive-field radius 2 LR pixels. Randomly initialised."""

    def __init__(self, scale: int = 2, channels: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, 3 * scale * scale, 3, padding=1)
        )
        self.shuffle = nn.PixelShuffle(scale)
        self.seen_sizes: list[tuple[int, int]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen_sizes.append(tuple(x.shape[-2:]))
        return self.shuffle(self.body(x))


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_self_ensemble_equals_the_explicit_average_of_the_eight_transformed_outputs(generator):
    torch.manual_seed(0)
    net = TinyConvSR(scale=2).eval()
    x = torch.rand(2, 3, 7, 5, generator=generator)  # non-square: quarter turns change the shape
    explicit = []
    for flip in (False, True):
        for turns in range(4):
            source = x.flip(-1) if flip else x
            output = torch.rot90(net(torch.rot90(source, turns, dims=(2, 3))), -turns, dims=(2, 3))
            explicit.append(output.flip(-1) if flip else output)
    expected = torch.stack(explicit).mean(0)
    with torch.no_grad():
        actual = self_ensemble(net, x)
    assert actual.shape == (2, 3, 14, 10)
    torch.testing.assert_close(actual, expected.detach(), rtol=0, atol=1e-6)
    # A non-equivariant net really is changed by the ensemble (the test above is not vacuous).
    assert not torch.allclose(actual, net(x).detach(), atol=1e-4)


def test_self_ensemble_is_exactly_the_identity_for_an_equivariant_arch(generator):
    net = NearestUpsampler(scale=3)
    x = torch.rand(1, 3, 6, 9, generator=generator)
    assert torch.equal(self_ensemble(net, x), net(x))


def test_tiled_forward_equals_the_whole_image_forward_when_overlap_covers_the_receptive_field(generator):
    torch.manual_seed(0)
    net = TinyConvSR(scale=2).eval()
    x = torch.rand(1, 3, 37, 29, generator=generator)
    with torch.no_grad():
        whole = net(x)
        net.seen_sizes.clear()
        tiled = tiled_forward(net, x, scale=2, tile=16, overlap=8)  # radius 2 <= 8 // 4
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
    assert len(net.seen_sizes) > 1
    assert max(max(size) for size in net.seen_sizes) <= 16


def test_tiled_forward_differs_from_the_whole_forward_when_the_overlap_is_too_small(generator):
    torch.manual_seed(0)
    net = TinyConvSR(scale=2).eval()
    x = torch.rand(1, 3, 37, 29, generator=generator)
    with torch.no_grad():
        error = (tiled_forward(net, x, scale=2, tile=16, overlap=0) - net(x)).abs().max()
    assert error > 1e-3


def test_tiled_forward_composes_with_self_ensemble_for_a_local_arch(generator):
    torch.manual_seed(0)
    net = TinyConvSR(scale=2).eval()
    x = torch.rand(1, 3, 24, 20, generator=generator)
    with torch.no_grad():
        whole = self_ensemble(net, x)
        tiled = self_ensemble(lambda t: tiled_forward(net, t, scale=2, tile=12, overlap=8), x)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)


def test_tiled_forward_rejects_an_overlap_as_large_as_the_tile():
    with pytest.raises(ValueError, match="overlap < tile"):
        tiled_forward(NearestUpsampler(2), torch.zeros(1, 3, 8, 8), scale=2, tile=4, overlap=4)


def test_tiled_forward_names_a_wrong_scale():
    with pytest.raises(ValueError, match="scale=3"):
        tiled_forward(NearestUpsampler(2), torch.zeros(1, 3, 8, 8), scale=3, tile=4, overlap=2)


def test_upsample_images_round_trips_png_and_jpg_files_through_an_arch(tmp_path: Path):
    rng = np.random.default_rng(0)
    inputs = []
    for name in ("a.png", "b.jpg"):
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, size=(10, 13, 3), dtype=np.uint8))
        inputs.append(path)
    written = upsample_images(
        NearestUpsampler(2), inputs, tmp_path / "out", scale=2, tile=6, overlap=4, self_ensemble=True
    )
    assert written == [tmp_path / "out" / "a.png", tmp_path / "out" / "b.png"]
    for source, target in zip(inputs, written, strict=True):
        decoded = cv2.imread(str(source))  # the JPG as cv2 decodes it, BGR
        expected = decoded.repeat(2, axis=0).repeat(2, axis=1)
        assert np.array_equal(cv2.imread(str(target)), expected)


def test_read_image_returns_rgb_in_unit_range(tmp_path: Path):
    path = tmp_path / "pixel.png"
    cv2.imwrite(str(path), np.array([[[10, 20, 255]]], dtype=np.uint8))  # B, G, R
    image = read_image(path)
    assert image.shape == (1, 3, 1, 1)
    torch.testing.assert_close(image.flatten(), torch.tensor([255, 20, 10]) / 255.0)


def test_upsample_images_refuses_two_inputs_with_the_same_stem(tmp_path: Path):
    with pytest.raises(ValueError, match="rename one"):
        upsample_images(NearestUpsampler(2), [tmp_path / "x.png", tmp_path / "x.jpg"], tmp_path / "out", scale=2)
