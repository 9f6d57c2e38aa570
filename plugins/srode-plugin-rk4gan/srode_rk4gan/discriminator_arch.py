"""The SRGAN discriminator (Ledig et al. 2017), with its dense head or a size-agnostic pooled head."""

from __future__ import annotations

import torch
from torch import nn

from srode_plugins.api import OptionError

DISCRIMINATOR_HEADS: tuple[str, ...] = ("dense", "pooled")
# (width multiplier of num_feat, stride) of the 8 conv3x3 layers: 64, 64s2, 128, 128s2, 256, 256s2, 512, 512s2.
_CONV_PLAN: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))


def feature_size(input_size: int) -> int:
    """Side of the last feature map for an input_size x input_size crop (4 stride-2 convs, padding 1)."""
    size = input_size
    for _, stride in _CONV_PLAN:
        size = (size - 1) // stride + 1
    return size


class SRGANDiscriminator(nn.Module):
    """SRGAN discriminator: 8 conv3x3 (BN on all but the first, LeakyReLU 0.2), then a real/fake head.

    Args:
        num_in_ch: image channels. num_feat: width of the first conv (64 in SRGAN).
        head: "dense" = SRGAN's flatten -> dense 1024 -> LeakyReLU -> dense 1 (fixed input size);
            "pooled" = global average pooling -> 1x1 conv 1024 -> LeakyReLU -> 1x1 conv 1 (any size, as in
            the report's code).
        input_size: HR crop side the dense head is built for (96 in SRGAN); ignored by the pooled head.

    Input (B, num_in_ch, H, W); output (B, 1) logits (use GANLoss 'vanilla', which applies the sigmoid).
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, head: str = "dense", input_size: int = 96) -> None:
        super().__init__()
        if head not in DISCRIMINATOR_HEADS:
            raise OptionError(f"got '{head}'; choose one of {', '.join(DISCRIMINATOR_HEADS)}.", key="network_d.head")
        self.head_kind = head
        self.input_size = input_size
        layers: list[nn.Module] = []
        in_ch = num_in_ch
        for index, (multiplier, stride) in enumerate(_CONV_PLAN):
            out_ch = num_feat * multiplier
            layers.append(nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=index == 0))
            if index > 0:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        hidden = 1024
        if head == "dense":
            self.head = nn.Sequential(
                nn.Flatten(),
                nn.Linear(in_ch * feature_size(input_size) ** 2, hidden),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Linear(hidden, 1),
            )
        else:
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(in_ch, hidden, 1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(hidden, 1, 1),
                nn.Flatten(),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_in_ch, H, W) -> (B, 1) logits; the dense head needs H = W = input_size."""
        if self.head_kind == "dense" and x.shape[-2:] != (self.input_size, self.input_size):
            raise OptionError(
                f"the dense head was built for {self.input_size}x{self.input_size} crops but got "
                f"{x.shape[-2]}x{x.shape[-1]}; set network_d.input_size to datasets.train.gt_size "
                "or use network_d.head: pooled.",
                key="network_d.input_size",
            )
        return self.head(self.features(x))
