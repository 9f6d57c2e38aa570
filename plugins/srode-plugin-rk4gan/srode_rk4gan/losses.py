"""VGG perceptual loss whose weights come from a path in the option file, never from the network."""

from __future__ import annotations

from srode_plugins.api import (
    RANDOM_INIT_ENV,
    VGG_WEIGHT_FILES,
    resolve_weights,  # applies the BasicSR compat patches: import before basicsr
)

# isort: split
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from basicsr.archs.vgg_arch import VGGFeatureExtractor
from basicsr.losses.basic_loss import PerceptualLoss
from basicsr.utils import get_root_logger


@contextmanager
def _random_vgg_backbone() -> Iterator[None]:
    """Let BasicSR's VGGFeatureExtractor build an untrained torchvision VGG (the core's switch for it)."""
    previous = os.environ.get(RANDOM_INIT_ENV)
    os.environ[RANDOM_INIT_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[RANDOM_INIT_ENV]
        else:
            os.environ[RANDOM_INIT_ENV] = previous


def load_torchvision_vgg_features(extractor: VGGFeatureExtractor, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Copy a torchvision VGG state dict ('features.<i>.weight') into BasicSR's named layers ('conv1_1.weight').

    Every layer the extractor keeps must be found (strict), the classifier and deeper layers are ignored.
    """
    kept = extractor.vgg_net._modules
    renamed = {}
    for key, value in state_dict.items():
        group, index, parameter = key.split(".")
        if group == "features" and int(index) < len(extractor.names) and extractor.names[int(index)] in kept:
            renamed[f"{extractor.names[int(index)]}.{parameter}"] = value
    extractor.vgg_net.load_state_dict(renamed, strict=True)


class LocalVGGPerceptualLoss(PerceptualLoss):
    """BasicSR's PerceptualLoss (same forward, returns (perceptual, style)) with the VGG read from `vgg_weights`.

    Args: those of basicsr.losses.PerceptualLoss (layer_weights, vgg_type, use_input_norm, range_norm,
        perceptual_weight, style_weight, criterion), plus
        vgg_weights: path of the torchvision VGG state dict, e.g. vgg19-dcbb9e9d.pth; None looks for that file
            in the torch hub cache (~/.cache/torch/hub/checkpoints). A missing file raises MissingWeightsError.
        random_init: use an untrained VGG (tests and smoke runs only: the loss is then not perceptual). The core's
            switch for untrained pretrained backbones (environment SRODE_RANDOM_INIT_PRETRAINED=1) does the same.

    Inputs (B, 3, H, W) in [0, 1].
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float],
        vgg_type: str = "vgg19",
        use_input_norm: bool = True,
        range_norm: bool = False,
        perceptual_weight: float = 1.0,
        style_weight: float = 0.0,
        criterion: str = "l1",
        vgg_weights: str | None = None,
        random_init: bool = False,
    ) -> None:
        with _random_vgg_backbone():
            super().__init__(
                dict(layer_weights),
                vgg_type=vgg_type,
                use_input_norm=use_input_norm,
                range_norm=range_norm,
                perceptual_weight=perceptual_weight,
                style_weight=style_weight,
                criterion=criterion,
            )
        self.weights_path: Path | None = None
        if random_init or os.environ.get(RANDOM_INIT_ENV) == "1":
            get_root_logger().warning(
                "LocalVGGPerceptualLoss uses an untrained VGG (random_init or the core's demo switch): "
                "fine for smoke tests, but the loss is not perceptual."
            )
            return
        self.weights_path = resolve_weights(
            vgg_weights,
            what=f"LocalVGGPerceptualLoss ({vgg_type})",
            option_key="train.perceptual_opt.vgg_weights",
            default_name=VGG_WEIGHT_FILES.get(vgg_type, f"{vgg_type}.pth"),
            disable_hint="remove 'train.perceptual_opt' to train without the perceptual loss "
            "(or set 'train.perceptual_opt.random_init: true' for a smoke test only)",
        )
        state_dict = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        load_torchvision_vgg_features(self.vgg, state_dict)
