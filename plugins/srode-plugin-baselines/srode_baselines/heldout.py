"""Scores on the held-out demo photos: a network (plain or self-ensembled) against MATLAB-style bicubic.

Used by the demo training test and the benchmarks; the protocol is the standard one of
`srode_plugins.evaluation.psnr_ssim` (Y channel, `scale` border pixels cropped).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

import srode_plugins.api as api

# isort: split
from basicsr.utils.matlab_functions import imresize

SRForward = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class HeldOutScore:
    """Mean PSNR (dB) / SSIM on the Y channel over the held-out photos, and seconds spent upsampling them."""

    psnr: float
    ssim: float
    seconds: float


def bicubic_upscale(lr_bgr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-style bicubic upscaling (the inverse of how the demo LR images were made), uint8 HWC."""
    upscaled = imresize(lr_bgr.astype(np.float64) / 255.0, scale)
    return np.clip(np.round(upscaled * 255.0), 0, 255).astype(np.uint8)


def network_upscale(forward: SRForward, lr_bgr: np.ndarray, device: torch.device) -> np.ndarray:
    """Run an SR forward ((1, 3, h, w) RGB in [0, 1] -> (1, 3, s*h, s*w)) on a uint8 BGR image."""
    x = torch.from_numpy(np.ascontiguousarray(lr_bgr[..., ::-1])).permute(2, 0, 1).float().div(255)
    with torch.inference_mode():
        y = forward(x.unsqueeze(0).to(device)).clamp(0, 1)
    rgb = y[0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy()
    return np.ascontiguousarray(rgb[..., ::-1])


def heldout_score(upscale: Callable[[np.ndarray], np.ndarray], scale: int, warmup: bool = False) -> HeldOutScore:
    """Score `upscale` (uint8 BGR LR -> uint8 BGR SR) on every held-out demo photo at `scale`.

    warmup: upscale every photo once untimed first (kernel selection per input shape, caches), for timings.
    """
    import cv2

    paths = api.demo_dataset(scale)
    hr_paths = sorted(paths.val_hr.glob("*.png"))
    if not hr_paths:
        raise FileNotFoundError(f"No held-out demo photos in {paths.val_hr}; delete the demo cache to rebuild it.")
    lr_images = [cv2.imread(str(paths.val_lr / hr_path.name), cv2.IMREAD_COLOR) for hr_path in hr_paths]
    if warmup:
        for lr in lr_images:
            upscale(lr)
    scores, seconds = [], 0.0
    for hr_path, lr in zip(hr_paths, lr_images, strict=True):
        hr = cv2.imread(str(hr_path), cv2.IMREAD_COLOR)
        start = time.perf_counter()
        sr = upscale(lr)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        scores.append(api.psnr_ssim(sr, hr, scale))
    psnr, ssim = np.mean(scores, axis=0)
    return HeldOutScore(float(psnr), float(ssim), seconds)


def heldout_scores(net: torch.nn.Module, scale: int, device: torch.device) -> dict[str, HeldOutScore]:
    """Bicubic, the plain network and its x8 self-ensemble on the held-out demo photos (warmed-up timings)."""
    net = net.to(device).eval()
    return {
        "bicubic": heldout_score(lambda lr: bicubic_upscale(lr, scale), scale, warmup=True),
        "network": heldout_score(lambda lr: network_upscale(net, lr, device), scale, warmup=True),
        "self-ensemble x8": heldout_score(
            lambda lr: network_upscale(lambda x: api.self_ensemble(net, x), lr, device), scale, warmup=True
        ),
    }
