"""Autoencoders between images and the space ResShift diffuses in.

Every autoencoder takes images in [0, 1] (BasicSR's convention) and works in a space where images span about
[-1, 1] (the range ResShift's kappa is calibrated for). `PixelSpaceAutoencoder` is that affine map alone;
`VQAutoencoder` is the official ResShift VQ-f4 autoencoder (same parameter names and shapes as its
`ldm.models.autoencoder.VQModelTorch`, 55,322,782 parameters), loaded from a local checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from srode_resshift.unet import load_official_checkpoint

VQ_F4_CHECKPOINT_NAME = "autoencoder_vq_f4.pth"

#: Constructor arguments of the official VQ-f4 autoencoder (the `autoencoder.params` of ResShift's configs).
RESSHIFT_VQ_F4_CONFIG: dict[str, object] = {
    "channels": 128,
    "channel_mult": [1, 2, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "z_channels": 3,
    "embed_dim": 3,
    "n_embed": 8192,
    "in_channels": 3,
    "out_channels": 3,
    "resolution": 256,
    "dropout": 0.0,
}


class LatentAutoencoder(nn.Module, ABC):
    """Maps images to the diffusion space and back.

    Attributes:
        latent_channels: channels of the latent (what the UNet's in/out_channels must be).
        downsample_factor: image side / latent side.
        latent_scale: latents are multiplied by it after encoding and divided before decoding.
    """

    latent_channels: int
    downsample_factor: int
    latent_scale: float

    @abstractmethod
    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) images in [0, 1] -> (B, latent_channels, H / f, W / f) latents, f = downsample_factor."""

    @abstractmethod
    def decode(self, latents: Tensor) -> Tensor:
        """(B, latent_channels, h, w) latents -> (B, 3, h * f, w * f) images, about [0, 1] (not clamped)."""


class PixelSpaceAutoencoder(LatentAutoencoder):
    """Diffusion in pixel space: images in [0, 1] map affinely to [-1, 1] and back."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.latent_channels = channels
        self.downsample_factor = 1
        self.latent_scale = 1.0

    def encode(self, images: Tensor) -> Tensor:
        return images * 2 - 1

    def decode(self, latents: Tensor) -> Tensor:
        return (latents + 1) / 2


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class VQResnetBlock(nn.Module):
    """Pre-activation residual block (GroupNorm, SiLU, 3x3 conv, twice); 1x1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)
        else:
            self.nin_shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class VQAttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1x1-conv projections, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        height = x.shape[2]
        q, k, v = (rearrange(layer(h), "b c h w -> b 1 (h w) c") for layer in (self.q, self.k, self.v))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b 1 (h w) c -> b c h w", h=height)
        return x + self.proj_out(out)


class VQDownsample(nn.Module):
    """3x3 stride-2 convolution after zero padding on the right and bottom only (halves even sides exactly)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class VQUpsample(nn.Module):
    """Nearest-neighbour x2 then 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResolutionLevel(nn.Module):
    """Residual blocks (each optionally followed by attention) at one resolution, then an optional resampler
    (child `downsample` or `upsample`, the names official checkpoints use)."""

    def __init__(
        self,
        widths: Sequence[tuple[int, int]],
        attention: bool,
        dropout: float,
        resample: Literal["downsample", "upsample"] | None,
    ) -> None:
        super().__init__()
        self.block = nn.ModuleList(VQResnetBlock(cin, cout, dropout) for cin, cout in widths)
        self.attn = nn.ModuleList(VQAttnBlock(cout) for _, cout in widths) if attention else nn.ModuleList()
        self.resample_name = resample
        out = widths[-1][1]
        if resample == "downsample":
            self.downsample = VQDownsample(out)
        elif resample == "upsample":
            self.upsample = VQUpsample(out)

    def forward(self, x: Tensor) -> Tensor:
        for index, block in enumerate(self.block):
            x = block(x)
            if self.attn:
                x = self.attn[index](x)
        return getattr(self, self.resample_name)(x) if self.resample_name else x


class MiddleBlock(nn.Module):
    """Residual block, self-attention, residual block at the lowest resolution."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = VQResnetBlock(channels, channels, dropout)
        self.attn_1 = VQAttnBlock(channels)
        self.block_2 = VQResnetBlock(channels, channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class VQEncoder(nn.Module):
    """Image (B, in_channels, H, W) -> features (B, z_channels, H / 2^(L-1), W / 2^(L-1)), L = len(channel_mult)."""

    def __init__(
        self,
        channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        in_channels: int,
        z_channels: int,
        resolution: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        width = channels
        for level, mult in enumerate(channel_mult):
            out = channels * mult
            widths = [(width, out)] + [(out, out)] * (num_res_blocks - 1)
            last = level == len(channel_mult) - 1
            self.down.append(
                ResolutionLevel(widths, resolution in attn_resolutions, dropout, None if last else "downsample")
            )
            if not last:
                resolution //= 2
            width = out
        self.mid = MiddleBlock(width, dropout)
        self.norm_out = _group_norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class VQDecoder(nn.Module):
    """Features (B, z_channels, h, w) -> image (B, out_channels, h * 2^(L-1), w * 2^(L-1))."""

    def __init__(
        self,
        channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        out_channels: int,
        z_channels: int,
        resolution: int,
        dropout: float,
    ) -> None:
        super().__init__()
        width = channels * channel_mult[-1]
        resolution //= 2 ** (len(channel_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.mid = MiddleBlock(width, dropout)
        stages: list[ResolutionLevel] = []
        for level in reversed(range(len(channel_mult))):
            out = channels * channel_mult[level]
            widths = [(width, out)] + [(out, out)] * num_res_blocks
            stages.append(
                ResolutionLevel(widths, resolution in attn_resolutions, dropout, "upsample" if level else None)
            )
            if level:
                resolution *= 2
            width = out
        # Stored lowest level first (up.0 is the full-resolution level), run from the deepest one.
        self.up = nn.ModuleList(reversed(stages))
        self.norm_out = _group_norm(width)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = stage(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Replace every latent vector by its nearest codebook entry (Euclidean), with a straight-through gradient."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def forward(self, z: Tensor) -> Tensor:
        """z: (B, embed_dim, h, w) -> quantised (B, embed_dim, h, w)."""
        height = z.shape[2]
        flat = rearrange(z, "b c h w -> (b h w) c")
        codebook = self.embedding.weight
        distances = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.t()
        quantised = self.embedding(distances.argmin(dim=1))
        quantised = flat + (quantised - flat).detach()
        return rearrange(quantised, "(b h w) c -> b c h w", b=z.shape[0], h=height)


class VQAutoencoder(LatentAutoencoder):
    """The official ResShift VQ autoencoder (f4: 256x256x3 images <-> 64x64x3 latents with the default config).

    Encoding returns the continuous pre-quantisation latent (as ResShift diffuses it); decoding quantises it to
    the codebook first (quantize_on_decode) as the official sampler does.

    Args:
        checkpoint: path of `autoencoder_vq_f4.pth` (github.com/zsyOAOA/ResShift/releases); None looks for it in
            the torch hub checkpoint folder. Missing file -> MissingWeightsError saying where to put it.
        load_weights: False builds a randomly initialised network (tests only).
        option_key: the option key users set the checkpoint path with, quoted in the error message.
        frozen: put the network in eval mode without gradients (ResShift never trains its autoencoder).
        channels, channel_mult, num_res_blocks, attn_resolutions, z_channels, embed_dim, n_embed, in_channels,
        out_channels, resolution, dropout: the official `ddconfig` / VQModelTorch arguments
            (`channels` is `ch`, `out_channels` is `out_ch`).
        quantize_on_decode: snap latents to the codebook before decoding.
        latent_scale: multiply latents after encoding (official ResShift: 1.0).
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        load_weights: bool = True,
        option_key: str = "autoencoder.checkpoint",
        frozen: bool = True,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (),
        z_channels: int = 3,
        embed_dim: int = 3,
        n_embed: int = 8192,
        in_channels: int = 3,
        out_channels: int = 3,
        resolution: int = 256,
        dropout: float = 0.0,
        quantize_on_decode: bool = True,
        latent_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.latent_channels = embed_dim
        self.downsample_factor = 2 ** (len(channel_mult) - 1)
        self.latent_scale = latent_scale
        self.quantize_on_decode = quantize_on_decode
        shared = {
            "channels": channels,
            "channel_mult": channel_mult,
            "num_res_blocks": num_res_blocks,
            "attn_resolutions": attn_resolutions,
            "z_channels": z_channels,
            "resolution": resolution,
            "dropout": dropout,
        }
        self.encoder = VQEncoder(in_channels=in_channels, **shared)
        self.decoder = VQDecoder(out_channels=out_channels, **shared)
        self.quantize = VectorQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        if load_weights:
            load_official_checkpoint(self, resolve_vq_checkpoint(checkpoint, option_key))
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def encode(self, images: Tensor) -> Tensor:
        return self.quant_conv(self.encoder(images * 2 - 1)) * self.latent_scale

    def decode(self, latents: Tensor) -> Tensor:
        latents = latents / self.latent_scale
        if self.quantize_on_decode:
            latents = self.quantize(latents)
        return (self.decoder(self.post_quant_conv(latents)) + 1) / 2


def resolve_vq_checkpoint(checkpoint: str | Path | None, option_key: str) -> Path:
    """Path of the VQ-f4 weights, or MissingWeightsError naming the file, where to put it and the alternative."""
    # Imported here: srode_plugins.api patches and imports basicsr, which building the network alone does not need.
    from srode_plugins import api

    return api.resolve_weights(
        None if checkpoint is None else str(checkpoint),
        what="ResShift VQ-f4 autoencoder (autoencoder_vq_f4.pth from github.com/zsyOAOA/ResShift/releases)",
        option_key=option_key,
        default_name=VQ_F4_CHECKPOINT_NAME,
        disable_hint="diffuse in pixel space instead (autoencoder type: PixelSpaceAutoencoder)",
    )
