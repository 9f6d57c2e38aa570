"""LPIPS as a training loss, on the core's LPIPS network (`srode_plugins.api.build_lpips`: local weights only)."""

from __future__ import annotations

from torch import Tensor, nn

from srode_plugins import api

__all__ = ["LPIPSLoss"]


class LPIPSLoss(nn.Module):
    """loss_weight * mean LPIPS between images (B, 3, H, W) in [0, 1]."""

    def __init__(self, loss_weight: float = 1.0, net: str = "alex", backbone_path: str | None = None) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.lpips = api.build_lpips(net, backbone_path, option_key="train.lpips_opt.backbone_path")

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        return self.loss_weight * self.lpips(prediction * 2 - 1, target * 2 - 1).mean()
