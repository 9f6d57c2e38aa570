"""Dual-attention RCAN: BasicSR's RCAN with non-local spatial attention before each block's channel attention.

The report's "RCAN-small vs dual-attention RCAN-small" comparison uses BasicSR's own RCAN for the first and
this class for the second, with the same sizes, so the only difference is the spatial attention.
"""

from __future__ import annotations

# isort: split
from basicsr.archs.rcan_arch import RCAN
from torch import nn

from srode_rk4gan.attention import NonLocalAttention


class DualAttentionRCAN(RCAN):
    """RCAN whose RCABs run conv -> ReLU -> conv -> non-local (spatial) -> channel attention.

    Args: those of basicsr.archs.rcan_arch.RCAN, plus
        nonlocal_kind: "gaussian" | "embedded". nonlocal_window: None (global) or region size in pixels.
        nonlocal_impl: "sdpa" (memory-efficient) | "naive" (reference).

    Input (B, num_in_ch, H, W) in [0, 1]; output (B, num_out_ch, upscale * H, upscale * W).
    """

    def __init__(
        self,
        num_in_ch: int,
        num_out_ch: int,
        num_feat: int = 64,
        num_group: int = 10,
        num_block: int = 16,
        squeeze_factor: int = 16,
        upscale: int = 4,
        res_scale: float = 1,
        img_range: float = 255.0,
        rgb_mean: tuple[float, float, float] = (0.4488, 0.4371, 0.4040),
        nonlocal_kind: str = "embedded",
        nonlocal_window: int | None = None,
        nonlocal_impl: str = "sdpa",
    ) -> None:
        super().__init__(
            num_in_ch,
            num_out_ch,
            num_feat,
            num_group,
            num_block,
            squeeze_factor,
            upscale,
            res_scale,
            img_range,
            rgb_mean,
        )
        for group in self.body:
            for rcab in group.residual_group:
                *convs, channel_attention = rcab.rcab
                spatial_attention = NonLocalAttention(num_feat, nonlocal_kind, nonlocal_window, nonlocal_impl)
                rcab.rcab = nn.Sequential(*convs, spatial_attention, channel_attention)
