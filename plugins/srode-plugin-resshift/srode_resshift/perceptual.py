"""LPIPS (Zhang et al. 2018, `lpips` package) built from local weights only.

The package ships its linear heads; the ImageNet backbone it would download from torchvision is read from a
local file instead: a torchvision checkpoint (alexnet-owt-7be5be79.pth / vgg16-397923af.pth, keys
``features.N.*``) or a full LPIPS state dict (keys ``net.sliceK.N.*`` and ``linK.*``).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

__all__ = ["BACKBONE_FILES", "LPIPSLoss", "build_lpips"]

BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def _backbone_state(lpips_net: nn.Module, checkpoint: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename torchvision `features.N.*` keys onto LPIPS's `sliceK.N.*` layout (same layer indices)."""
    renamed = {}
    for key in lpips_net.state_dict():
        layer_key = "features." + key.split(".", 1)[1]
        if layer_key not in checkpoint:
            raise KeyError(f"backbone checkpoint has no '{layer_key}' (needed for LPIPS '{key}')")
        renamed[key] = checkpoint[layer_key]
    return renamed


def build_lpips(
    net: str = "alex", backbone_path: str | None = None, option_key: str = "lpips.backbone_path"
) -> nn.Module:
    """A frozen `lpips.LPIPS` in eval mode taking images in [-1, 1]; raises MissingWeightsError without weights."""
    import lpips

    from srode_plugins import api

    if net not in BACKBONE_FILES:
        raise ValueError(
            f"option '{option_key.rsplit('.', 1)[0]}.net' is {net!r}; choose one of {sorted(BACKBONE_FILES)}"
        )
    path = api.resolve_weights(
        backbone_path,
        what=f"LPIPS {net} backbone (torchvision ImageNet weights)",
        option_key=option_key,
        default_name=BACKBONE_FILES[net],
        disable_hint="turn LPIPS off (set the LPIPS option to false / remove train.lpips_opt)",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's deprecation note on `pretrained=False`
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint = checkpoint.get("state_dict", checkpoint)
    if any(key.startswith("lin0.") for key in checkpoint):
        model.load_state_dict(checkpoint, strict=True)
    else:
        model.net.load_state_dict(_backbone_state(model.net, checkpoint), strict=True)
    model.requires_grad_(False)
    return model.eval()


class LPIPSLoss(nn.Module):
    """loss_weight * mean LPIPS between images (B, 3, H, W) in [0, 1]."""

    def __init__(self, loss_weight: float = 1.0, net: str = "alex", backbone_path: str | None = None) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.lpips = build_lpips(net, backbone_path, option_key="train.lpips_opt.backbone_path")

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        return self.loss_weight * self.lpips(prediction * 2 - 1, target * 2 - 1).mean()
