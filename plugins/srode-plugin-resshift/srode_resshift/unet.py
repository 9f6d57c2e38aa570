"""ResShift's denoiser: a DDPM-style UNet whose self-attention layers are Swin-transformer stages.

Parameter names and shapes follow the official ResShift `UNetModelSwin` (github.com/zsyOAOA/ResShift), so its
checkpoints load with `strict=True`; `RESSHIFT_X4_UNET_CONFIG` is the configuration of the official x4 model.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Mlp, trunc_normal_
from torch import Tensor, nn

from srode_plugins import api

ShiftMask = Literal["swin", "resshift"]

#: Constructor arguments of the official ResShift x4 network (configs/realsr_swinunet_realesrgan256*.yaml);
#: 118,593,583 parameters. Official checkpoints work on 64x64 latents of the VQ-f4 autoencoder, and were trained
#: with the official code's shifted-window mask, hence shift_mask="resshift".
RESSHIFT_X4_UNET_CONFIG: dict[str, object] = {
    "image_size": 64,
    "in_channels": 3,
    "model_channels": 160,
    "out_channels": 3,
    "attention_resolutions": [64, 32, 16, 8],
    "dropout": 0.0,
    "channel_mult": [1, 2, 2, 4],
    "num_res_blocks": [2, 2, 2, 2],
    "conv_resample": True,
    "num_head_channels": 32,
    "use_scale_shift_norm": True,
    "swin_depth": 2,
    "swin_embed_dim": 192,
    "window_size": 8,
    "mlp_ratio": 4.0,
    "cond_lq": True,
    "lq_size": 64,
    "shift_mask": "resshift",
}

#: Logit added between tokens of different regions in a shifted window (the value official Swin code uses).
_MASKED_LOGIT = -100.0


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (stable under fp16 / bf16 autocast)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    Args:
        timesteps: (B,) time values (ResShift feeds step indices in [0, T)).
        dim: embedding width.
        max_period: longest period of the sinusoids.

    Returns:
        (B, dim) float32 tensor: [cos(t f_0..f_{d/2-1}), sin(t f_0..f_{d/2-1})], zero-padded when dim is odd.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    angles = timesteps.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class TimestepSequential(nn.Sequential):
    """A sequence of layers; those that take a timestep embedding (ResBlock) receive it."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Downsample(nn.Module):
    """Halve the resolution with a strided 3x3 convolution (or 2x2 average pooling when conv=False)."""

    def __init__(self, channels: int, conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or channels
        if conv:
            self.op: nn.Module = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)
        elif out_channels == channels:
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)
        else:
            raise ValueError(f"Downsample without convolution keeps the channels; got {channels} -> {out_channels}")

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double the resolution (nearest neighbour), optionally followed by a 3x3 convolution."""

    def __init__(self, channels: int, conv: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if conv else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding (additive, or FiLM scale/shift after the 2nd norm)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int,
        use_scale_shift_norm: bool,
        norm_groups: int,
    ) -> None:
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(norm_groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        out_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # The residual branch starts at zero, so every block starts as the identity (DDPM practice).
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)
        self.out_layers = nn.Sequential(
            GroupNorm32(norm_groups, out_channels), nn.SiLU(), nn.Dropout(p=dropout), out_conv
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            norm, rest = self.out_layers[0], self.out_layers[1:]
            h = rest(norm(h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def relative_position_index(window: int) -> Tensor:
    """(window^2, window^2) int64 index into the (2 window - 1)^2 table of relative position biases."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])
    delta = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return delta[0] * (2 * window - 1) + delta[1]


def _region(index: Tensor, size: int, window: int, shift: int) -> Tensor:
    """Which of the three strips of a cyclically shifted axis each index falls in (0, 1 or 2)."""
    return (index >= size - window).long() + (index >= size - shift).long()


def shifted_window_mask(height: int, width: int, window: int, shift: int, mode: ShiftMask) -> Tensor:
    """Additive attention mask of shifted-window attention.

    Args:
        height, width: feature map size (multiples of `window`).
        window: window side; shift: cyclic shift (0 < shift < window).
        mode: "swin": tokens that were not neighbours before the cyclic shift do not attend to each other
            (the Swin paper). "resshift": the mask the official ResShift code computes (it labels a token by the
            strip of row `window_row * window + column_in_window` only); its checkpoints were trained with it.

    Returns:
        (num_windows, window^2, window^2) float32 tensor of 0 and -100; windows in row-major order.
    """
    rows = torch.arange(height)[:, None].expand(height, width)
    cols = torch.arange(width)[None, :].expand(height, width)
    if mode == "swin":
        labels = 3 * _region(rows, height, window, shift) + _region(cols, width, window, shift)
    elif mode == "resshift":
        labels = _region((rows // window) * window + cols % window, height, window, shift)
    else:
        raise ValueError(f"shift_mask must be 'swin' or 'resshift', got {mode!r}")
    windows = rearrange(labels, "(nh r) (nw c) -> (nh nw) (r c)", r=window, c=window)
    different = windows[:, None, :] != windows[:, :, None]
    return torch.where(different, _MASKED_LOGIT, 0.0)


@functools.lru_cache(maxsize=64)
def _cached_window_mask(height: int, width: int, window: int, shift: int, mode: ShiftMask) -> Tensor:
    # Read-only: masks of sizes other than the stored buffer's are reused across calls and blocks. Built on the
    # CPU explicitly so that a forward pass under `with torch.device("meta")` cannot cache a meta tensor.
    with torch.device("cpu"):
        return shifted_window_mask(height, width, window, shift, mode)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias per head."""

    def __init__(self, dim: int, window: int, num_heads: int, attn_drop: float, proj_drop: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Swin embed dim {dim} is not divisible by the number of heads {num_heads}")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        """tokens: (B, num_windows, N, C) with N = window^2; mask: (num_windows, N, N) additive or None."""
        qkv = rearrange(self.qkv(tokens), "b w n (k h d) -> k b w h n d", k=3, h=self.num_heads)
        n = tokens.shape[2]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        bias = bias.permute(2, 0, 1).to(qkv.dtype)  # (heads, N, N)
        if mask is not None:
            bias = bias[None] + mask[:, None].to(qkv.dtype)  # (num_windows, heads, N, N)
        out = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(rearrange(out, "b w h n d -> b w n (h d)")))


class SwinBlock(nn.Module):
    """Swin-transformer block on a (B, C, H, W) map: (shifted-)window attention then a 1x1-conv MLP."""

    def __init__(
        self,
        dim: int,
        resolution: int,
        num_heads: int,
        window_size: int,
        shifted: bool,
        mlp_ratio: float,
        dropout: float,
        norm_groups: int,
        shift_mask: ShiftMask,
    ) -> None:
        super().__init__()
        # As in the official code: a map no larger than the window is one window, never shifted.
        self.window = min(window_size, resolution)
        self.shift = window_size // 2 if shifted and resolution > window_size else 0
        self.resolution = resolution
        self.shift_mask: ShiftMask = shift_mask
        self.norm1 = GroupNorm32(norm_groups, dim)
        self.attn = WindowAttention(dim, self.window, num_heads, attn_drop=0.0, proj_drop=dropout)
        self.norm2 = GroupNorm32(norm_groups, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=dropout, use_conv=True)
        if self.shift:
            mask = shifted_window_mask(resolution, resolution, self.window, self.shift, shift_mask)
            self.register_buffer("attn_mask", mask)
        else:
            self.attn_mask: Tensor | None = None

    def _mask_for(self, height: int, width: int, device: torch.device) -> Tensor | None:
        if not self.shift:
            return None
        if (height, width) == (self.resolution, self.resolution) and self.attn_mask is not None:
            return self.attn_mask
        return _cached_window_mask(height, width, self.window, self.shift, self.shift_mask).to(device)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        if height % self.window or width % self.window:
            raise ValueError(
                f"Swin block with window {self.window} got a {height}x{width} feature map; pad the network input "
                "to a multiple of UNetModelSwin.size_multiple"
            )
        h = self.norm1(x)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(2, 3))
        tokens = rearrange(h, "b c (nh r) (nw s) -> b (nh nw) (r s) c", r=self.window, s=self.window)
        tokens = self.attn(tokens, self._mask_for(height, width, x.device))
        h = rearrange(tokens, "b (nh nw) (r s) c -> b c (nh r) (nw s)", nh=height // self.window, r=self.window)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(2, 3))
        x = x + h
        return x + self.mlp(self.norm2(x))


class ChannelProjection(nn.Module):
    """1x1 convolution between the UNet width and the Swin embed width, optionally group-normalised after."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool, norm_groups: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 1)
        self.norm = GroupNorm32(norm_groups, out_channels) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x))


class SwinStage(nn.Module):
    """Project to the Swin width, run `depth` blocks (every second one shifted), project back."""

    def __init__(
        self,
        channels: int,
        embed_dim: int,
        depth: int,
        resolution: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        dropout: float,
        patch_norm: bool,
        norm_groups: int,
        shift_mask: ShiftMask,
    ) -> None:
        super().__init__()
        self.patch_embed = ChannelProjection(channels, embed_dim, patch_norm, norm_groups)
        self.patch_unembed = ChannelProjection(embed_dim, channels, patch_norm, norm_groups)
        self.blocks = nn.ModuleList(
            SwinBlock(
                embed_dim,
                resolution,
                num_heads,
                window_size,
                index % 2 == 1,
                mlp_ratio,
                dropout,
                norm_groups,
                shift_mask,
            )
            for index in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.patch_embed(x)
        for block in self.blocks:
            h = block(h)
        return self.patch_unembed(h)


def _lq_feature_extractor(lq_channels: int, octaves: int) -> tuple[nn.Module, int]:
    """Convolutions bringing an LR image `2^octaves` times larger than the latent down to the latent size."""
    if octaves == 0:
        return nn.Identity(), lq_channels
    layers: list[nn.Module] = []
    channels_in, width = lq_channels, 16
    for _ in range(octaves):
        layers += [nn.Conv2d(channels_in, width, 3, padding=1), nn.SiLU(), Downsample(width, True, 2 * width)]
        channels_in = width = 2 * width
    return nn.Sequential(*layers), width


class UNetModelSwin(nn.Module):
    """ResShift's UNet: DDPM residual blocks with Swin-transformer stages instead of self-attention.

    Args:
        image_size: side of the training input x (latent or pixel), used for the stored shifted-window masks.
        in_channels, out_channels: channels of x and of the prediction.
        model_channels: base width; level l has model_channels * channel_mult[l] channels.
        num_res_blocks: residual blocks per level (int or one per level).
        attention_resolutions: feature-map sides (image_size / 2^level) at which a Swin stage follows the first
            residual block of the level (encoder and decoder); the middle block always has one.
        dropout: dropout in residual blocks and Swin MLP / projections.
        channel_mult: width multiplier per level; len(channel_mult) - 1 down-samplings.
        conv_resample: strided conv / conv after nearest upsampling (else average pooling / plain upsampling).
        num_heads: Swin heads when num_head_channels is None.
        num_head_channels: channels per Swin head (heads = swin_embed_dim // num_head_channels).
        use_scale_shift_norm: FiLM conditioning (scale and shift) instead of adding the embedding.
        swin_depth: Swin blocks per stage; swin_embed_dim: their width; window_size: window side;
        mlp_ratio: hidden / embed width of the Swin MLP; patch_norm: GroupNorm after the in/out projections.
        cond_lq: concatenate the LR image to x (the network then requires `lq`).
        lq_size: side of the LR image the stored weights expect; when larger than image_size by 2^k, k strided
            conv stages shrink it (the official x2 layout). Default: image_size.
        lq_channels: channels of the LR image.
        lq_resize_mode: interpolation used when the (processed) LR image is not the size of x, e.g. bicubic
            upsampling of the LR image in pixel space.
        norm_groups: groups of every GroupNorm (32 in the official model; all widths must be multiples).
        shift_mask: "swin" (the paper's mask) or "resshift" (what official checkpoints were trained with).
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int | Sequence[int],
        attention_resolutions: Sequence[int],
        dropout: float = 0.0,
        channel_mult: Sequence[int] = (1, 2, 4, 8),
        conv_resample: bool = True,
        num_heads: int = 1,
        num_head_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        swin_depth: int = 2,
        swin_embed_dim: int = 96,
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        patch_norm: bool = False,
        cond_lq: bool = True,
        lq_size: int | None = None,
        lq_channels: int = 3,
        lq_resize_mode: str = "bicubic",
        norm_groups: int = 32,
        shift_mask: ShiftMask = "swin",
    ) -> None:
        super().__init__()
        levels = len(channel_mult)
        blocks_per_level = [num_res_blocks] * levels if isinstance(num_res_blocks, int) else list(num_res_blocks)
        if len(blocks_per_level) != levels:
            raise ValueError(
                f"num_res_blocks={list(blocks_per_level)} needs one entry per channel_mult level ({levels}); "
                "give one number per level or a single int"
            )
        if num_head_channels is not None:
            if num_head_channels <= 0 or swin_embed_dim % num_head_channels:
                raise ValueError(f"num_head_channels={num_head_channels} must divide swin_embed_dim={swin_embed_dim}")
            num_heads = swin_embed_dim // num_head_channels
        if shift_mask not in ("swin", "resshift"):
            raise ValueError(f"shift_mask must be 'swin' or 'resshift', got {shift_mask!r}")
        lq_size = image_size if lq_size is None else lq_size
        octaves = math.log2(lq_size / image_size) if lq_size > image_size else 0.0
        if not float(octaves).is_integer():
            raise ValueError(f"lq_size={lq_size} must be image_size={image_size} times a power of two")

        self.image_size = image_size
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.model_channels = model_channels
        self.cond_lq = cond_lq
        self.lq_resize_mode = lq_resize_mode

        def res_block(channels: int, out: int) -> ResBlock:
            return ResBlock(channels, time_embed_dim, dropout, out, use_scale_shift_norm, norm_groups)

        def swin_stage(channels: int, resolution: int) -> SwinStage:
            return SwinStage(
                channels,
                swin_embed_dim,
                swin_depth,
                resolution,
                num_heads,
                window_size,
                mlp_ratio,
                dropout,
                patch_norm,
                norm_groups,
                shift_mask,
            )

        time_embed_dim = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        cond_channels = 0
        if cond_lq:
            self.feature_extractor, cond_channels = _lq_feature_extractor(lq_channels, int(octaves))

        ch = first_width = channel_mult[0] * model_channels
        stem = nn.Conv2d(in_channels + cond_channels, ch, 3, padding=1)
        self.input_blocks = nn.ModuleList([TimestepSequential(stem)])
        skip_widths = [ch]
        resolution = image_size
        swin_windows: list[int] = []
        for level, mult in enumerate(channel_mult):
            for index in range(blocks_per_level[level]):
                layers: list[nn.Module] = [res_block(ch, mult * model_channels)]
                ch = mult * model_channels
                if resolution in attention_resolutions and index == 0:
                    layers.append(swin_stage(ch, resolution))
                    swin_windows.append(min(window_size, resolution) << level)
                self.input_blocks.append(TimestepSequential(*layers))
                skip_widths.append(ch)
            if level != levels - 1:
                self.input_blocks.append(TimestepSequential(Downsample(ch, conv_resample)))
                skip_widths.append(ch)
                resolution //= 2

        self.middle_block = TimestepSequential(res_block(ch, ch), swin_stage(ch, resolution), res_block(ch, ch))
        swin_windows.append(min(window_size, resolution) << (levels - 1))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for index in range(blocks_per_level[level] + 1):
                layers = [res_block(ch + skip_widths.pop(), mult * model_channels)]
                ch = mult * model_channels
                if resolution in attention_resolutions and index == 0:
                    layers.append(swin_stage(ch, resolution))
                if level and index == blocks_per_level[level]:
                    layers.append(Upsample(ch, conv_resample))
                    resolution *= 2
                self.output_blocks.append(TimestepSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(norm_groups, ch), nn.SiLU(), nn.Conv2d(first_width, out_channels, 3, padding=1)
        )
        self.size_multiple = math.lcm(1 << (levels - 1), *swin_windows)

    def forward(self, x: Tensor, timesteps: Tensor, lq: Tensor | None = None) -> Tensor:
        """Predict from the noisy input.

        Args:
            x: (B, in_channels, H, W), H and W multiples of `size_multiple`.
            timesteps: (B,) time values fed to the sinusoidal embedding (float allowed).
            lq: (B, lq_channels, h, w) LR image, required iff cond_lq; resized to (H, W) with `lq_resize_mode`
                when its size (after the feature extractor) differs from x's.

        Returns:
            (B, out_channels, H, W).
        """
        if self.cond_lq:
            if lq is None:
                raise ValueError("UNetModelSwin was built with cond_lq=True: pass the LR image as `lq`")
            cond = self.feature_extractor(lq.to(x.dtype))
            if cond.shape[-2:] != x.shape[-2:]:
                cond = F.interpolate(cond, size=x.shape[-2:], mode=self.lq_resize_mode)
            x = torch.cat([x, cond], dim=1)
        elif lq is not None:
            raise ValueError("UNetModelSwin was built with cond_lq=False but got `lq`; build it with cond_lq=True")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def load_official_checkpoint(network: nn.Module, checkpoint: str | Path) -> None:
    """Load an official ResShift checkpoint (UNet or autoencoder state_dict) into `network` with strict=True.

    Accepts a bare state_dict or one wrapped under 'state_dict' / 'params_ema' / 'params', with or without the
    'module.' / '_orig_mod.' prefixes.
    """
    network.load_state_dict(api.read_state_dict(checkpoint, "params_ema"), strict=True)
