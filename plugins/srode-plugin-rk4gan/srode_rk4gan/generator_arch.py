"""RK4DualAttnRDN: an RDN whose blocks are Runge-Kutta steps of a dense + dual-attention residual function."""

from __future__ import annotations

from srode_plugins.api import OptionError  # applies the BasicSR compat patches: import before basicsr

# isort: split
import torch
from basicsr.archs.arch_util import Upsample
from torch import nn

from srode_rk4gan.attention import build_attention
from srode_rk4gan.integrators import RungeKuttaStep, check_coefficients, check_integrator

SUPPORTED_SCALES: tuple[int, ...] = (2, 3, 4, 8)


def check_scale(upscale: int, option_key: str) -> None:
    """Raise OptionError naming `option_key` unless the pixel-shuffle upsampler supports `upscale`."""
    if upscale not in SUPPORTED_SCALES:
        raise OptionError(f"got {upscale}; the pixel-shuffle upsampler supports {SUPPORTED_SCALES}.", key=option_key)


class DenseAttentionBranch(nn.Module):
    """G of one block: residual dense layers -> local feature fusion (1x1) -> attention tail.

    (B, num_feat, H, W) -> (B, num_feat, H, W); layer i sees num_feat + i * growth_rate concatenated channels.
    """

    def __init__(self, num_feat: int, num_layer: int, growth_rate: int, attention: nn.Module) -> None:
        super().__init__()
        self.dense_layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(num_feat + index * growth_rate, growth_rate, 3, 1, 1), nn.ReLU(inplace=True))
            for index in range(num_layer)
        )
        self.local_fusion = nn.Conv2d(num_feat + num_layer * growth_rate, num_feat, 1)
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x
        for layer in self.dense_layers:
            features = torch.cat([features, layer(features)], dim=1)
        return self.attention(self.local_fusion(features))


class RK4DualAttnRDN(nn.Module):
    """RDN generator whose D blocks are Runge-Kutta steps y + sum_i b_i G(y + c_i k_{i-1}) with one shared G.

    Global structure as RDN (Zhang et al. 2018): SFE1 -> SFE2 -> D blocks -> global feature fusion
    (concat -> 1x1 -> 3x3) + SFE1 -> pixel-shuffle upsampler -> 3x3 conv.

    Args:
        num_in_ch, num_out_ch: image channels.
        upscale: 2, 3, 4 or 8.
        num_feat: G0, block width. num_block: D. num_layer: C, dense layers per block. growth_rate: G.
        integrator: "euler" (plain residual block, the "w/o RK" ablation), "rk2" (Heun, the report's code)
            or "rk4" (classic Runge-Kutta, the report's design).
        coefficients: how the tableau (c_i, b_i) of every block is trained, from the classic values: "cogs181"
            (shared scalars one_half / one_third / one_sixth, as the report's code), "per_entry" (one parameter
            per entry) or "fixed" (not trained). See `RungeKuttaStep`.
        attention: "none" | "channel" (SE) | "spatial" (non-local) | "dual" (non-local, then SE).
        nonlocal_kind: "gaussian" | "embedded". nonlocal_window: None (global) or region size in pixels.
        nonlocal_impl: "sdpa" (memory-efficient) | "naive" (reference). se_reduction: SE squeeze factor.

    Input (B, num_in_ch, H, W) in [0, 1]; output (B, num_out_ch, upscale * H, upscale * W).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        upscale: int = 4,
        num_feat: int = 64,
        num_block: int = 16,
        num_layer: int = 8,
        growth_rate: int = 64,
        integrator: str = "rk4",
        coefficients: str = "cogs181",
        attention: str = "dual",
        nonlocal_kind: str = "gaussian",
        nonlocal_window: int | None = None,
        nonlocal_impl: str = "sdpa",
        se_reduction: int = 8,
    ) -> None:
        super().__init__()
        check_scale(upscale, "network_g.upscale")
        check_integrator(integrator, "network_g.integrator")
        check_coefficients(coefficients, "network_g.coefficients")
        self.upscale = upscale
        self.shallow_conv1 = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.shallow_conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.blocks = nn.ModuleList(
            RungeKuttaStep(
                DenseAttentionBranch(
                    num_feat,
                    num_layer,
                    growth_rate,
                    build_attention(attention, num_feat, se_reduction, nonlocal_kind, nonlocal_window, nonlocal_impl),
                ),
                integrator,
                coefficients,
            )
            for _ in range(num_block)
        )
        self.global_fusion = nn.Sequential(
            nn.Conv2d(num_block * num_feat, num_feat, 1), nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        )
        self.upsample = Upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_in_ch, H, W) -> (B, num_out_ch, upscale * H, upscale * W)."""
        shallow = self.shallow_conv1(x)
        features = self.shallow_conv2(shallow)
        block_outputs = []
        for block in self.blocks:
            features = block(features)
            block_outputs.append(features)
        fused = self.global_fusion(torch.cat(block_outputs, dim=1)) + shallow
        return self.conv_last(self.upsample(fused))
