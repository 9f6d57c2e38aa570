"""NODESRNet: the Neural-ODE super-resolution network of Le Scao (2020).

conv_first (in -> F) -> [append A zero channels] -> ODE block(s) over [0, T] -> trunk_conv (F + A -> F)
-> (interpolate x2 -> conv -> LeakyReLU(0.2)) per factor 2 (or one x3) -> HRconv -> LeakyReLU -> conv_last
(+ bicubic upsampling of the input when `bicubic_residual`). The ODE function applies ReLU to the state before
its first conv for the standard NODE but not for the augmented one, as Le Scao's code (`state_relu`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from srode_node.odeblock import ODEBlock
from srode_plugins.api import OptionError

# "lescao": ReLU on the state for the standard NODE, none for the augmented one, as in Le Scao's code
STATE_RELU_MODES = ("lescao", "always")


class TimeConcatConv2d(nn.Conv2d):
    """3x3 convolution whose input gets one extra channel filled with the current time `t`.

    Input `(B, C, H, W)` and 0-d `t` -> output `(B, out_channels, H, W)`; the weight has `C + 1` input channels,
    the time channel first. The concatenation is never materialised: by linearity the time channel contributes
    `t * conv(ones, w_t)` (a border-aware constant map), which saves a copy of the state per convolution and keeps
    the channel count of the big convolution aligned (80 instead of 81), which bf16 / channels_last kernels need.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels + 1, out_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        state_response = F.conv2d(x, self.weight[:, 1:], self.bias, padding=1)
        time_response = F.conv2d(torch.ones_like(x[:1, :1]), self.weight[:, :1], padding=1)
        return state_response + t.to(state_response.dtype) * time_response


class ConvODEFunc(nn.Module):
    """Vector field `f(t, z) = ReLU(conv_L(... ReLU(conv_1(ReLU(z)))))` with `layers` 3x3 convolutions.

    Args:
        channels: state channels C (features + augmentation); every conv maps C -> C (C + 1 -> C when
            time-dependent, the extra channel being the constant t).
        layers: number of convolutions (2 on BSD, 7 on DIV2K in the paper).
        time_dependent: concatenate a constant channel equal to t before every convolution.
        init_scale: Kaiming-normal weights scaled by this factor, zero biases (as BasicSR's default_init_weights).
        state_relu: apply the leading ReLU to the state z; without it
            `f(t, z) = ReLU(conv_L(... ReLU(conv_1(z))))`.
    """

    def __init__(
        self, channels: int, layers: int, time_dependent: bool, init_scale: float = 1.0, state_relu: bool = True
    ) -> None:
        super().__init__()
        self.time_dependent = time_dependent
        self.state_relu = state_relu
        if time_dependent:
            self.convs = nn.ModuleList(TimeConcatConv2d(channels, channels) for _ in range(layers))
        else:
            self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, 1, 1) for _ in range(layers))
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(init_scale)
            nn.init.zeros_(conv.bias)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        """`t` 0-d tensor, `z` `(B, C, H, W)` -> `dz/dt` `(B, C, H, W)`."""
        out = F.relu(z) if self.state_relu else z
        for conv in self.convs:
            out = F.relu(conv(t, out) if self.time_dependent else conv(out))
        return out

    def extra_repr(self) -> str:
        return f"time_dependent={self.time_dependent}, state_relu={self.state_relu}"


class NODESRNet(nn.Module):
    """Neural-ODE SR generator. All keyword arguments are YAML keys of `network_g`.

    Args:
        num_in_ch, num_out_ch: image channels (3 for RGB).
        num_feat: F, feature channels (64 in the paper).
        upscale: 2, 3 or 4 (4 = two x2 stages).
        ode_layers: convolutions in the ODE function (2 BSD, 7 DIV2K).
        num_ode_blocks: ODE blocks in sequence (1 = the paper's NODE; > 1 = its "sequential" variant).
        time_dependent: concatenate t before every convolution of the ODE function.
        augment_channels: A zero channels appended to the state (Dupont et al.; the paper uses F // 4),
            dropped by the trunk convolution (F + A -> F).
        integration_time: T, the state is integrated over [0, T].
        solver, rtol, atol, step_size, backprop, adjoint_seminorm, max_nfe: see `ODEBlock`.
        ode_init_scale: scale of the Kaiming initialisation of the ODE convolutions.
        upsample_mode: interpolation before each upsampling conv ("bicubic" as in the reference, or "nearest").
        bicubic_residual: add the bicubic upsampling of the input to the output (the reference's default).
        state_relu: where the ODE function applies ReLU to the state before its first conv. "lescao" (Le Scao's
            code): for the standard NODE only, not for the augmented one (its `augmented_conv.py` vector field
            starts with the conv); "always": in every variant (srode's earlier form).

    Shapes: `(B, num_in_ch, H, W)` -> `(B, num_out_ch, upscale * H, upscale * W)`; values in [0, 1].
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        upscale: int = 4,
        ode_layers: int = 2,
        num_ode_blocks: int = 1,
        time_dependent: bool = False,
        augment_channels: int = 0,
        integration_time: float = 1.0,
        solver: str = "dopri5",
        rtol: float = 1e-4,
        atol: float = 1e-4,
        step_size: float | None = None,
        backprop: str = "discrete",
        adjoint_seminorm: bool = False,
        max_nfe: int | None = None,
        ode_init_scale: float = 1.0,
        upsample_mode: str = "bicubic",
        bicubic_residual: bool = True,
        state_relu: str = "lescao",
    ) -> None:
        super().__init__()
        if upscale not in (2, 3, 4):
            raise OptionError(f"upscale must be 2, 3 or 4, got {upscale!r}", key="network_g.upscale")
        if augment_channels < 0:
            raise OptionError(f"augment_channels must be >= 0, got {augment_channels!r}; the paper uses "
                              "num_feat // 4", key="network_g.augment_channels")
        if ode_layers < 1 or num_ode_blocks < 1:
            raise OptionError(f"ode_layers and num_ode_blocks must be >= 1, got {ode_layers!r} and "
                              f"{num_ode_blocks!r}", key="network_g.ode_layers")
        if upsample_mode not in ("bicubic", "nearest", "bilinear"):
            raise OptionError(f"upsample_mode must be bicubic, bilinear or nearest, got {upsample_mode!r}",
                              key="network_g.upsample_mode")
        if state_relu not in STATE_RELU_MODES:
            raise OptionError(f"state_relu must be one of {list(STATE_RELU_MODES)}, got {state_relu!r}; 'lescao' "
                              "computes what Le Scao's code computes", key="network_g.state_relu")
        self.upscale = upscale
        self.augment_channels = augment_channels
        self.upsample_mode = upsample_mode
        self.bicubic_residual = bicubic_residual
        state_channels = num_feat + augment_channels

        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.ode_blocks = nn.ModuleList(
            ODEBlock(
                ConvODEFunc(state_channels, ode_layers, time_dependent, ode_init_scale,
                            state_relu=state_relu == "always" or augment_channels == 0),
                integration_time=integration_time,
                solver=solver,
                rtol=rtol,
                atol=atol,
                step_size=step_size,
                backprop=backprop,
                adjoint_seminorm=adjoint_seminorm,
                max_nfe=max_nfe,
            )
            for _ in range(num_ode_blocks)
        )
        self.trunk_conv = nn.Conv2d(state_channels, num_feat, 3, 1, 1)
        self.upsample_factors = [2, 2] if upscale == 4 else [upscale]
        self.upconvs = nn.ModuleList(nn.Conv2d(num_feat, num_feat, 3, 1, 1) for _ in self.upsample_factors)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    @property
    def nfe_forward(self) -> int:
        """Vector-field evaluations of the last forward pass, summed over the ODE blocks."""
        return sum(block.nfe_forward for block in self.ode_blocks)

    @property
    def nfe_backward(self) -> int:
        """Vector-field evaluations of the backward pass since the last forward (0 for discrete backprop)."""
        return sum(block.nfe_backward for block in self.ode_blocks)

    def forward(self, x: Tensor) -> Tensor:
        """`x` `(B, C_in, H, W)` in [0, 1] -> `(B, C_out, s*H, s*W)`."""
        state = self.conv_first(x)
        if self.augment_channels:
            zeros = state.new_zeros(state.shape[0], self.augment_channels, *state.shape[2:])
            # torch.cat of mixed layouts falls back to NCHW: match the state's layout to keep channels_last
            zeros = zeros.contiguous(memory_format=_memory_format(state))
            state = torch.cat([state, zeros], dim=1)
        for block in self.ode_blocks:
            state = block(state)
        feat = self.trunk_conv(state)
        for factor, upconv in zip(self.upsample_factors, self.upconvs, strict=True):
            feat = F.leaky_relu(upconv(self._interpolate(feat, factor)), 0.2)
        out = self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))
        if self.bicubic_residual:
            out = out + self._interpolate(x, self.upscale, mode="bicubic")
        return out

    def _interpolate(self, x: Tensor, factor: int, mode: str | None = None) -> Tensor:
        mode = mode or self.upsample_mode
        align = False if mode in ("bicubic", "bilinear") else None
        return F.interpolate(x, scale_factor=factor, mode=mode, align_corners=align)


def _memory_format(tensor: Tensor) -> torch.memory_format:
    channels_last = tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def count_parameters(net: nn.Module) -> int:
    """Number of trainable scalars of `net`."""
    return sum(math.prod(p.shape) for p in net.parameters() if p.requires_grad)
