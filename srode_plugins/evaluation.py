"""Standard SR evaluation: PSNR / SSIM with `scale` border pixels cropped, on Y (BT.601) or on RGB.

The numbers come from BasicSR's own `calculate_psnr` / `calculate_ssim` (so they match `basicsr test` and
published tables); this module pairs SR outputs with HR images, crops HR to a multiple of the scale, and
prints per-image rows plus their mean as Markdown or a rich table. LPIPS / DISTS / NIQE columns come from
srode_plugins/metrics when asked for (`metrics=`, `basicsr evaluate --metrics`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from srode_plugins import compat
from srode_plugins.data.prepare import IMAGE_SUFFIXES

compat.apply()

if TYPE_CHECKING:
    from rich.table import Table

Channel = Literal["y", "rgb"]
_BICUBIC_LABEL = "bicubic (mean, same images)"


@dataclass(frozen=True)
class ImageScore:
    """PSNR (dB) and SSIM of one SR image against its HR reference; `perceptual`: the scores of the metrics
    asked for beside them ("lpips", "dists", "niqe"; srode_plugins/metrics), all lower-is-better."""

    name: str
    psnr: float
    ssim: float
    perceptual: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationResult:
    """Per-image scores, their mean, and the protocol they were measured with.

    bicubic: mean scores of MATLAB-bicubic upscaling of the LR images of the same HR images (a baseline row),
    or None. source: what the rows score ("SR outputs" or "bicubic from LR").
    """

    rows: list[ImageScore]
    mean: ImageScore
    scale: int
    channel: Channel
    bicubic: ImageScore | None = None
    source: str = "SR outputs"


def _check_channel(channel: str) -> None:
    if channel not in ("y", "rgb"):
        raise ValueError(f"channel='{channel}' is not an evaluation channel; use 'y' (BT.601 luma) or 'rgb'.")


def psnr_ssim(sr: np.ndarray, hr: np.ndarray, scale: int, channel: Channel = "y") -> tuple[float, float]:
    """PSNR (dB, peak 255) and SSIM of `sr` against `hr` with `scale` pixels cropped from every border.

    Args:
        sr: (H, W, 3) BGR as cv2 reads it, values in [0, 255] (uint8 or float).
        hr: (H', W', 3) BGR; when larger than `sr` by less than `scale` (HR not divisible by the scale)
            its top-left (H, W) part is used, as BasicSR's mod-crop does.
        scale: upscaling factor, also the border crop in pixels.
        channel: "y" for BT.601 luma (the standard protocol) or "rgb" for all three channels.

    Returns:
        (psnr, ssim); psnr is inf for identical images.
    """
    from basicsr.metrics import calculate_psnr, calculate_ssim

    _check_channel(channel)
    height, width = sr.shape[:2]
    if not (0 <= hr.shape[0] - height < scale and 0 <= hr.shape[1] - width < scale):
        raise ValueError(
            f"SR size {sr.shape[:2]} does not match HR size {hr.shape[:2]} at scale {scale}: "
            "the HR image must be the SR size or larger by less than the scale."
        )
    hr = hr[:height, :width]
    options = {"crop_border": scale, "input_order": "HWC", "test_y_channel": channel == "y"}
    return float(calculate_psnr(sr, hr, **options)), float(calculate_ssim(sr, hr, **options))


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder '{folder}' does not exist.")
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(lr, scale, 'bicubic')`` of a uint8 (h, w, C) image -> uint8 (h*scale, w*scale, C).

    The upscaling counterpart of `basicsr data prepare`'s downscale (same BasicSR MATLAB port), rounded to
    8 bits as a saved bicubic image is: the "Bicubic" row of SR papers.
    """
    from basicsr.utils.matlab_functions import imresize

    high = imresize(lr.astype(np.float64) / 255.0, scale)
    return (np.clip(high, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _lr_partner(hr_path: Path, lr_by_stem: dict[str, Path], scale: int, lr_dir: Path) -> Path:
    # `basicsr data prepare` keeps the HR name; DIV2K-style LR folders add x<scale>: 0801.png -> 0801x4.png.
    for candidate in (hr_path.stem, f"{hr_path.stem}x{scale}"):
        if candidate in lr_by_stem:
            return lr_by_stem[candidate]
    raise FileNotFoundError(
        f"No LR image for HR '{hr_path.name}' in '{lr_dir}' (looked for '{hr_path.stem}.*' and "
        f"'{hr_path.stem}x{scale}.*'). Pass the LR folder `basicsr data prepare` wrote (OUT/LR_bicubic/X{scale})."
    )


def _mean(rows: list[ImageScore], name: str = "mean") -> ImageScore:
    # PSNR averaged in dB, as SR papers report it.
    perceptual = {metric: float(np.mean([r.perceptual[metric] for r in rows])) for metric in rows[0].perceptual}
    return ImageScore(name, float(np.mean([r.psnr for r in rows])), float(np.mean([r.ssim for r in rows])), perceptual)


def _score(name: str, sr: np.ndarray, hr: np.ndarray, scale: int, channel: Channel,
           metrics: tuple[str, ...]) -> ImageScore:
    psnr, ssim = psnr_ssim(sr, hr, scale, channel)
    if not metrics:
        return ImageScore(name, psnr, ssim)
    from srode_plugins.metrics.val_metrics import score_images

    return ImageScore(name, psnr, ssim, score_images(sr, hr[: sr.shape[0], : sr.shape[1]], metrics, scale))


def _bicubic_rows(hr_paths: list[Path], lr_dir: Path, scale: int, channel: Channel,
                  metrics: tuple[str, ...] = ()) -> list[ImageScore]:
    lr_by_stem = {path.stem: path for path in _images_in(lr_dir)}
    rows = []
    for hr_path in hr_paths:
        upscaled = bicubic_upscale(_read(_lr_partner(hr_path, lr_by_stem, scale, lr_dir)), scale)
        rows.append(_score(hr_path.stem, upscaled, _read(hr_path), scale, channel, metrics))
    return rows


def evaluate_bicubic(
    lr_dir: Path, hr_dir: Path, scale: int, channel: Channel = "y", metrics: tuple[str, ...] = ()
) -> EvaluationResult:
    """Score MATLAB-bicubic upscaling (`bicubic_upscale`) of every LR partner of every image in `hr_dir`.

    The LR partner of HR `<stem>.*` is `<stem>.*` or `<stem>x<scale>.*` in `lr_dir`. With LR made by
    `basicsr data prepare`, Set5 x4 on Y gives the published bicubic 28.42 dB (see docs/benchmark-protocol.md).
    """
    _check_channel(channel)
    hr_paths = _images_in(hr_dir)
    if not hr_paths:
        raise FileNotFoundError(f"HR folder '{hr_dir}' holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    rows = _bicubic_rows(hr_paths, lr_dir, scale, channel, metrics)
    return EvaluationResult(rows, _mean(rows), scale, channel, source="bicubic from LR")


def _hr_partner(sr_path: Path, hr_by_stem: dict[str, Path], scale: int, sr_suffix: str) -> Path:
    stem = sr_path.stem.removesuffix(sr_suffix)
    # SR outputs of DIV2K-style LR files keep the LR name: 0801x4.png -> HR 0801.png.
    for candidate in (stem, stem.removesuffix(f"x{scale}")):
        if candidate in hr_by_stem:
            return hr_by_stem[candidate]
    raise FileNotFoundError(
        f"No HR image for SR output '{sr_path.name}' (looked for '{stem}.*' and '{stem.removesuffix(f'x{scale}')}.*'"
        f" in the HR folder). If the outputs carry a suffix such as '_EDSR', pass it as sr_suffix."
    )


def _read(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"Cannot read image '{path}': missing or not an image cv2 can decode.")
    return image


def evaluate_folder(
    sr_dir: Path,
    hr_dir: Path,
    scale: int,
    channel: Channel = "y",
    sr_suffix: str = "",
    bicubic_lr_dir: Path | None = None,
    metrics: tuple[str, ...] = (),
) -> EvaluationResult:
    """Score every image in `sr_dir` against its HR partner in `hr_dir` (same stem, or the stem without
    `sr_suffix` and a DIV2K-style `x<scale>`), with `psnr_ssim`.

    With `bicubic_lr_dir`, also score MATLAB-bicubic upscaling of the LR partners of the same HR images
    (`evaluate_bicubic`) and report their mean as the `bicubic` row. `metrics`: names from
    srode_plugins.metrics.PERCEPTUAL_METRICS scored beside PSNR/SSIM, with the same `scale` border cropped.

    Returns:
        Rows sorted by file name and their mean (PSNR averaged in dB, as SR papers report it).
    """
    _check_channel(channel)
    sr_paths = _images_in(sr_dir)
    if not sr_paths:
        raise FileNotFoundError(f"SR folder '{sr_dir}' holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    hr_by_stem = {path.stem: path for path in _images_in(hr_dir)}
    rows = []
    hr_paths = []
    for sr_path in sr_paths:
        hr_path = _hr_partner(sr_path, hr_by_stem, scale, sr_suffix)
        rows.append(_score(sr_path.stem, _read(sr_path), _read(hr_path), scale, channel, metrics))
        hr_paths.append(hr_path)
    bicubic = None
    if bicubic_lr_dir is not None:
        bicubic = _mean(_bicubic_rows(hr_paths, bicubic_lr_dir, scale, channel, metrics), "bicubic")
    return EvaluationResult(rows, _mean(rows), scale, channel, bicubic=bicubic)


def _format_psnr(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


def _headers(result: EvaluationResult) -> tuple[str, str, str]:
    channel = "Y" if result.channel == "y" else "RGB"
    return "image", f"PSNR {channel} (dB)", f"SSIM {channel}"


def _perceptual_cells(score: ImageScore) -> list[str]:
    return [f"{value:.4f}" for value in score.perceptual.values()]


def to_markdown(result: EvaluationResult) -> str:
    """A Markdown table: one row per image, then the mean in bold; PSNR to 0.01 dB, SSIM and the perceptual
    metrics (LPIPS, DISTS, NIQE: lower is better) to 4 places."""
    image, psnr, ssim = _headers(result)
    extra = [name.upper() for name in result.mean.perceptual]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    lines = [
        f"Scale x{result.scale}, {result.scale} border pixels cropped; rows: {result.source}.",
        "",
        line([image, psnr, ssim, *extra]),
        line(["---"] + ["---:"] * (2 + len(extra))),
    ]
    lines += [line([row.name, _format_psnr(row.psnr), f"{row.ssim:.4f}", *_perceptual_cells(row)])
              for row in result.rows]
    mean = result.mean
    lines.append(line([f"**{cell}**" for cell in (mean.name, _format_psnr(mean.psnr), f"{mean.ssim:.4f}",
                                                   *_perceptual_cells(mean))]))
    if result.bicubic is not None:
        bicubic = result.bicubic
        lines.append(line([_BICUBIC_LABEL, _format_psnr(bicubic.psnr), f"{bicubic.ssim:.4f}",
                           *_perceptual_cells(bicubic)]))
    return "\n".join(lines) + "\n"


def to_rich_table(result: EvaluationResult) -> Table:
    """The same table as `to_markdown` as a rich Table for the console."""
    from rich.table import Table

    image, psnr, ssim = _headers(result)
    table = Table(title=f"x{result.scale}, {result.scale}-pixel border cropped, {result.source}", show_footer=False)
    table.add_column(image)
    table.add_column(psnr, justify="right")
    table.add_column(ssim, justify="right")
    for name in result.mean.perceptual:
        table.add_column(name.upper(), justify="right")
    for row in result.rows:
        table.add_row(row.name, _format_psnr(row.psnr), f"{row.ssim:.4f}", *_perceptual_cells(row))
    table.add_section()
    mean = result.mean
    table.add_row(mean.name, _format_psnr(mean.psnr), f"{mean.ssim:.4f}", *_perceptual_cells(mean), style="bold")
    if result.bicubic is not None:
        bicubic = result.bicubic
        table.add_row(_BICUBIC_LABEL, _format_psnr(bicubic.psnr), f"{bicubic.ssim:.4f}", *_perceptual_cells(bicubic))
    return table
