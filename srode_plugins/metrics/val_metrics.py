"""LPIPS, DISTS and NIQE as BasicSR metric functions, for `val.metrics` and `basicsr test`.

BasicSR's validation calls `METRIC_REGISTRY.get(type)(img=sr, img2=gt, **options)` with numpy images
(tensor2img: (H, W, 3) BGR uint8) and nothing else. These functions turn them into tensors once and score them on
the validating model's device. Example::

    val:
      metrics:
        lpips: {type: lpips, better: lower}             # net: alex | vgg, backbone_path: ~
        dists: {type: dists, better: lower}             # weights_path: ~, backbone_path: ~
        niqe: {type: niqe, crop_border: 4, better: lower}
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import torch
from torch import Tensor

from srode_plugins.errors import OptionError
from srode_plugins.metrics.scores import dists_distance, lpips_distance, niqe_score

__all__ = ["dists", "image_tensor", "lpips", "metric_device", "niqe", "score_images"]

logger = logging.getLogger("basicsr")
_WARNED_BETTER: set[str] = set()
# How far up the stack the validating model may sit: calculate_metric <- (nondist_)validation <- validation.
_MODEL_FRAME_DEPTH = 8


def _validating_model_device() -> torch.device | None:
    # BasicSR passes a metric only the images; the model whose validation asked for it is up the call stack.
    from basicsr.models.base_model import BaseModel

    frame = sys._getframe(1)
    for _ in range(_MODEL_FRAME_DEPTH):
        frame = frame.f_back
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, BaseModel):
            return owner.device
    return None


def metric_device(preference: str = "auto") -> torch.device:
    """`auto`: the device of the BasicSR model being validated, else CUDA when present, else the CPU.
    Anything else is passed to torch.device ("cpu", "cuda:1")."""
    if preference != "auto":
        return torch.device(preference)
    found = _validating_model_device()
    if found is not None:
        return found
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def image_tensor(image: np.ndarray, device: torch.device, crop_border: int = 0) -> Tensor:
    """(H, W, 3) BGR or (H, W) grey array as BasicSR passes it (uint8, uint16, or float in [0, 255]) ->
    (1, 3, H, W) or (1, 1, H, W) RGB float32 in [0, 1] on `device`, `crop_border` pixels cropped."""
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    if image.ndim == 2:
        image = image[..., None]
    elif image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W, 3) BGR or (H, W) image, got shape {image.shape}")
    if crop_border:
        image = image[crop_border:-crop_border, crop_border:-crop_border]
    tensor = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).to(device)
    return (tensor.permute(2, 0, 1)[None].float() / scale).clamp_(0, 1)


def _check_better(metric: str, better: str | None) -> None:
    if better == "lower" or metric in _WARNED_BETTER:
        return
    _WARNED_BETTER.add(metric)
    logger.warning(f"val.metrics: {metric} is lower-is-better but its entry says better: {better or 'higher'} "
                   f"(BasicSR's default); add 'better: lower' so the best-checkpoint record keeps the lowest {metric}.")


def _reference(metric: str, img2: np.ndarray | None) -> np.ndarray:
    if img2 is None:
        raise OptionError(f"{metric} compares the output with its ground truth, but the validation set has none "
                          "(no dataroot_gt); use a no-reference metric such as niqe there.", key="val.metrics")
    return img2


def _color(image: Tensor) -> Tensor:
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


def _pair(metric: str, img: np.ndarray, img2: np.ndarray | None, crop_border: int, device: str,
          better: str | None) -> tuple[Tensor, Tensor]:
    """The SR image and its ground truth as (1, 3, H, W) RGB tensors in [0, 1] on the metric's device."""
    _check_better(metric, better)
    where = metric_device(device)
    return (_color(image_tensor(img, where, crop_border)),
            _color(image_tensor(_reference(metric, img2), where, crop_border)))


def lpips(
    img: np.ndarray, img2: np.ndarray | None = None, net: str = "alex", backbone_path: str | None = None,
    crop_border: int = 0, device: str = "auto", better: str | None = None,
) -> float:
    """LPIPS v0.1 of the SR image `img` against the ground truth `img2` (lower is closer)."""
    sr, hr = _pair("LPIPS", img, img2, crop_border, device, better)
    return float(lpips_distance(sr, hr, net=net, backbone_path=backbone_path))


def dists(
    img: np.ndarray, img2: np.ndarray | None = None, weights_path: str | None = None,
    backbone_path: str | None = None, crop_border: int = 0, device: str = "auto", better: str | None = None,
) -> float:
    """DISTS of the SR image `img` against the ground truth `img2` (lower is closer)."""
    sr, hr = _pair("DISTS", img, img2, crop_border, device, better)
    return float(dists_distance(sr, hr, weights_path=weights_path, backbone_path=backbone_path))


def niqe(
    img: np.ndarray, img2: np.ndarray | None = None, crop_border: int = 0, color_space: str = "ycbcr",
    device: str = "auto", better: str | None = None,
) -> float:
    """NIQE of the SR image `img` alone (no reference; `img2` is ignored; lower is more natural)."""
    _check_better("NIQE", better)
    return float(niqe_score(image_tensor(img, metric_device(device)), crop_border=crop_border,
                            color_space=color_space))


_BY_NAME = {"lpips": lpips, "dists": dists, "niqe": niqe}


def score_images(sr: np.ndarray, hr: np.ndarray, names: tuple[str, ...], crop_border: int) -> dict[str, float]:
    """{name: score} of the metrics `names` (from PERCEPTUAL_METRICS) for one (H, W, 3) BGR SR image and its
    same-size HR reference, `crop_border` pixels cropped: what `basicsr evaluate --metrics` adds to PSNR/SSIM."""
    return {name: _BY_NAME[name](sr, hr, crop_border=crop_border, better="lower") for name in names}
