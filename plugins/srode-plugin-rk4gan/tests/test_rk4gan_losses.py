"""LocalVGGPerceptualLoss: weights from a local path, a clear error when missing, random init for tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from srode_rk4gan.losses import LocalVGGPerceptualLoss
from torch import nn

from srode_plugins.api import MissingWeightsError

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def write_partial_vgg19_state(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision-style VGG19 state dict holding conv1_1, conv1_2 (features.0, .2) plus keys to be ignored."""
    torch.manual_seed(0)
    state = {
        "features.0.weight": torch.randn(64, 3, 3, 3) * 0.1,
        "features.0.bias": torch.randn(64) * 0.1,
        "features.2.weight": torch.randn(64, 64, 3, 3) * 0.05,
        "features.2.bias": torch.randn(64) * 0.1,
        "features.5.weight": torch.randn(128, 64, 3, 3),  # conv2_1: deeper than the loss needs
        "classifier.6.bias": torch.randn(1000),
    }
    torch.save(state, path)
    return state


def test_random_init_builds_without_any_weights_file_and_gives_a_finite_loss(monkeypatch, tmp_path) -> None:
    # random_init: true is the tests' switch; the loss is then not perceptual, only well-formed.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    loss = LocalVGGPerceptualLoss({"conv1_2": 1.0}, random_init=True)
    x = torch.rand(1, 3, 16, 16, requires_grad=True)

    percep, style = loss(x, torch.rand(1, 3, 16, 16))

    assert style is None and torch.isfinite(percep)
    percep.backward()
    assert x.grad is not None
    assert not any(p.requires_grad for p in loss.vgg.parameters())


def test_missing_weights_file_names_the_file_the_option_and_how_to_disable(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "vgg19-dcbb9e9d.pth"

    with pytest.raises(MissingWeightsError) as excinfo:
        LocalVGGPerceptualLoss({"conv5_4": 1.0}, vgg_weights=str(missing))

    message = str(excinfo.value)
    assert str(missing) in message
    assert "train.perceptual_opt.vgg_weights" in message
    assert "remove 'train.perceptual_opt'" in message


def test_default_location_is_the_torch_hub_cache(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    with pytest.raises(MissingWeightsError, match=r"vgg19-dcbb9e9d.pth.*torch.hub.checkpoints"):
        LocalVGGPerceptualLoss({"conv5_4": 1.0})


def test_weights_from_the_path_are_loaded_into_the_named_layers(tmp_path) -> None:
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    state = write_partial_vgg19_state(path)

    loss = LocalVGGPerceptualLoss({"relu1_2": 1.0}, vgg_weights=str(path))

    assert loss.weights_path == path
    torch.testing.assert_close(loss.vgg.vgg_net.conv1_1.weight, state["features.0.weight"])
    torch.testing.assert_close(loss.vgg.vgg_net.conv1_2.bias, state["features.2.bias"])


def test_loaded_loss_equals_l1_between_torchvision_vgg_features(tmp_path) -> None:
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    state = write_partial_vgg19_state(path)
    reference = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
    reference.load_state_dict(
        {f"{index}.{param}": state[f"features.{index}.{param}"] for index in (0, 2) for param in ("weight", "bias")}
    )
    x, gt = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 12, 12)

    percep, _ = LocalVGGPerceptualLoss({"relu1_2": 1.0}, vgg_weights=str(path), perceptual_weight=0.5)(x, gt)

    def features(img: torch.Tensor) -> torch.Tensor:
        return reference((img - IMAGENET_MEAN) / IMAGENET_STD)

    torch.testing.assert_close(percep, 0.5 * (features(x) - features(gt)).abs().mean())
