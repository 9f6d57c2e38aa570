"""LPIPS, DISTS and NIQE on torch tensors, on the tensors' device (networks are built once per device)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from srode_plugins.metrics.networks import build_dists, build_lpips, random_init_requested

__all__ = ["NIQE_MIN_SIZE", "dists_distance", "lpips_distance", "niqe_score"]

# NIQE fits its Gaussian to 96x96 blocks; an image without one whole block has no score.
NIQE_MIN_SIZE = 96


# `random_init` is part of the key so a network built with random weights is never reused for real ones.
@lru_cache(maxsize=8)
def _lpips_on(device: torch.device, net: str, backbone_path: str | None, option_key: str, random_init: bool
              ) -> nn.Module:
    return build_lpips(net, backbone_path, option_key).to(device)


@lru_cache(maxsize=4)
def _dists_on(device: torch.device, weights_path: str | None, backbone_path: str | None, option_key: str,
              random_init: bool) -> nn.Module:
    return build_dists(weights_path, backbone_path, option_key).to(device)


def _check_pair(sr: Tensor, hr: Tensor) -> None:
    if sr.shape != hr.shape or sr.ndim != 4 or sr.shape[1] != 3:
        raise ValueError(f"expected two (B, 3, H, W) RGB batches of the same shape, got {tuple(sr.shape)} and "
                         f"{tuple(hr.shape)}")


@torch.no_grad()
def lpips_distance(
    sr: Tensor, hr: Tensor, *, net: str = "alex", backbone_path: str | None = None,
    option_key: str = "val.metrics.lpips.backbone_path",
) -> Tensor:
    """LPIPS v0.1 between (B, 3, H, W) RGB batches in [0, 1]: (B,) float32, 0 for identical images, lower is
    closer. `net` is the backbone ("alex" or "vgg"); `backbone_path` its file (default: the torch cache)."""
    _check_pair(sr, hr)
    model = _lpips_on(sr.device, net, backbone_path, option_key, random_init_requested())
    return model(sr.float() * 2 - 1, hr.float() * 2 - 1).reshape(-1)


@torch.no_grad()
def dists_distance(
    sr: Tensor, hr: Tensor, *, weights_path: str | None = None, backbone_path: str | None = None,
    option_key: str = "val.metrics.dists",
) -> Tensor:
    """DISTS between (B, 3, H, W) RGB batches in [0, 1]: (B,) float32, ~0 for identical images, lower is closer.
    `weights_path`: the DISTS alpha/beta file; `backbone_path`: torchvision's VGG16 (default: the torch cache)."""
    _check_pair(sr, hr)
    model = _dists_on(sr.device, weights_path, backbone_path, option_key, random_init_requested())
    return model(sr.float(), hr.float()).reshape(-1)


@lru_cache(maxsize=1)
def _niqe_pristine_model() -> tuple[Tensor, Tensor]:
    import basicsr.metrics
    import numpy as np

    # BasicSR ships the official NIQE model (mean and covariance of the pristine-image features) in its wheel.
    data = np.load(Path(basicsr.metrics.__file__).with_name("niqe_pris_params.npz"))
    return torch.from_numpy(data["mu_pris_param"]).reshape(-1), torch.from_numpy(data["cov_pris_param"])


@torch.no_grad()
def niqe_score(image: Tensor, *, crop_border: int = 0, color_space: str = "ycbcr") -> Tensor:
    """NIQE (Mittal et al. 2013, pyiqa's implementation, the official pristine model) of (B, 3, H, W) RGB or
    (B, 1, H, W) grey images in [0, 1]: (B,) float64, lower is more natural. Measured on the luma of
    `color_space` ("ycbcr": BT.601 as BasicSR; "yiq": pyiqa's default), `crop_border` pixels cropped."""
    from srode_plugins.metrics.networks import pyiqa_module

    calculate_niqe = pyiqa_module("pyiqa.archs.niqe_arch", "NIQE", "val.metrics.niqe").calculate_niqe
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"NIQE expects (B, 3, H, W) or (B, 1, H, W) images, got {tuple(image.shape)}")
    if color_space not in ("ycbcr", "yiq"):
        raise ValueError(f"NIQE color_space is {color_space!r}; use 'ycbcr' (BasicSR's protocol) or 'yiq'")
    height, width = (size - 2 * crop_border for size in image.shape[-2:])
    if min(height, width) < NIQE_MIN_SIZE:
        raise ValueError(f"NIQE needs at least {NIQE_MIN_SIZE}x{NIQE_MIN_SIZE} pixels after cropping {crop_border} "
                         f"border pixels; the image is {tuple(image.shape[-2:])}")
    mu, cov = _niqe_pristine_model()
    score = calculate_niqe(image.float(), crop_border, True, color_space, mu, cov)
    return score.reshape(-1)
