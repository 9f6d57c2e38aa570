"""The continuous-time seed report's Table 1 protocol (GitHub daniil-shlenskii/resshift-continuous-in-time,
``project_description.pdf``, "Results for nfe=15 and various ODE solvers and discretizations").

Rows, in the report's order: Baseline, then Euler and Heun for rho = 1, 4, 8, -4, -8; columns: solver, rho,
LPIPS, SSIM, PSNR. Every row costs 15 network evaluations per image:

- Euler / Heun: the seed's own samplers (`SeedEulerSampler` with 15 grid points, `SeedHeunSampler` with 8, which
  makes 2 * 8 - 1 = 15 calls) on the seed's grid, over the seed's exponential schedule (`ExponentialSchedule`,
  preset authors) with the option schedule's T and kappa. They step dt alpha(t) D(x, t), which needs a bounded
  alpha(t); the official power schedule's continuous extension has none near t = 1/T.
- Baseline: the official discrete sampler (`DiscreteResShiftSampler`, 15 steps) on the option file's own schedule.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from srode_plugins import api

# srode_plugins.api applies the BasicSR compat patches, so basicsr is imported after it
# isort: split
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img

from .samplers import DiscreteResShiftSampler, ResShiftSampler
from .schedules import ExponentialSchedule, ResShiftSchedule
from .seed_samplers import SeedEulerSampler, SeedHeunSampler

__all__ = [
    "REPORT_NFE",
    "REPORT_RHOS",
    "REPORT_TABLE_1",
    "EvaluationImage",
    "ProtocolRow",
    "ReportScores",
    "RowResult",
    "evaluation_images",
    "lpips_distance",
    "protocol_rows",
    "score_rows",
    "seed_schedule",
]

REPORT_NFE = 15
REPORT_RHOS = (1.0, 4.0, 8.0, -4.0, -8.0)
SEED_SOLVERS: dict[str, type[ResShiftSampler]] = {"Euler": SeedEulerSampler, "Heun": SeedHeunSampler}
BASELINE = "Baseline"
# torchvision's ImageNet weights that LPIPS v0.1 builds on (the names `basicsr weights fetch` knows)
LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": api.VGG_WEIGHT_FILES["vgg16"]}

LpipsDistance = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ReportScores:
    """One published row: LPIPS (lower is better), SSIM and PSNR in dB (higher is better)."""

    lpips: float
    ssim: float
    psnr: float


# The report's Table 1 (1000 ImageNet-256 test images, x4 bicubic; its trained model), for comparison only.
REPORT_TABLE_1: dict[tuple[str, float | None], ReportScores] = {
    (BASELINE, None): ReportScores(0.376, 0.428, 20.36),
    ("Euler", 1.0): ReportScores(0.364, 0.457, 20.29),
    ("Euler", 4.0): ReportScores(0.363, 0.451, 20.45),
    ("Euler", 8.0): ReportScores(0.362, 0.449, 20.50),
    ("Euler", -4.0): ReportScores(0.362, 0.453, 20.33),
    ("Euler", -8.0): ReportScores(0.361, 0.453, 20.35),
    ("Heun", 1.0): ReportScores(0.375, 0.473, 19.93),
    ("Heun", 4.0): ReportScores(0.374, 0.472, 19.53),
    ("Heun", 8.0): ReportScores(0.374, 0.472, 19.96),
    ("Heun", -4.0): ReportScores(0.365, 0.462, 20.10),
    ("Heun", -8.0): ReportScores(0.364, 0.459, 20.13),
}


@dataclass(frozen=True)
class ProtocolRow:
    """One table row: its solver name and rho (None for the baseline), the sampler and the schedule it runs on."""

    solver: str
    rho: float | None
    sampler: ResShiftSampler
    schedule: ResShiftSchedule

    @property
    def rho_label(self) -> str:
        return "-" if self.rho is None else f"{self.rho:g}"


@dataclass
class RowResult:
    """Per-image scores of one row; the properties are the means over images, `nfe` the counted calls."""

    row: ProtocolRow
    psnrs: list[float] = field(default_factory=list)
    ssims: list[float] = field(default_factory=list)
    lpipses: list[float] = field(default_factory=list)
    nfe_counts: list[int] = field(default_factory=list)

    @property
    def psnr(self) -> float:
        return sum(self.psnrs) / max(len(self.psnrs), 1)

    @property
    def ssim(self) -> float:
        return sum(self.ssims) / max(len(self.ssims), 1)

    @property
    def lpips(self) -> float | None:
        return sum(self.lpipses) / len(self.lpipses) if self.lpipses else None

    @property
    def nfe(self) -> int:
        """Network calls per image as counted while sampling (the largest, should images ever differ)."""
        return max(self.nfe_counts, default=0)


@dataclass(frozen=True)
class EvaluationImage:
    """An LR / HR pair: lq (1, 3, h, w) and gt (1, 3, scale h, scale w), RGB in [0, 1], on the model's device."""

    name: str
    lq: Tensor
    gt: Tensor


def seed_schedule(schedule: ResShiftSchedule) -> ExponentialSchedule:
    """The seed's exponential schedule (preset authors) with `schedule`'s T and kappa."""
    return ExponentialSchedule(preset="authors", num_timesteps=schedule.num_timesteps, kappa=schedule.kappa)


def protocol_rows(
    schedule: ResShiftSchedule,
    baseline_option: Mapping[str, Any] | None = None,
    nfe: int = REPORT_NFE,
    rhos: Iterable[float] = REPORT_RHOS,
) -> list[ProtocolRow]:
    """The table's rows at `nfe` calls per image: the baseline on `schedule`, then the seed's Euler and Heun for
    every rho on `seed_schedule(schedule)`. `baseline_option`: the option file's `resshift.sampler`; its
    `respacing` is kept when it is a DiscreteResShiftSampler."""
    respacing = "space_timesteps"
    if baseline_option and baseline_option.get("type") == "DiscreteResShiftSampler":
        respacing = str(baseline_option.get("respacing", respacing))
    rows = [ProtocolRow(BASELINE, None, DiscreteResShiftSampler(num_steps=nfe, respacing=respacing), schedule)]
    exponential = seed_schedule(schedule)
    for solver, sampler_class in SEED_SOLVERS.items():
        num_steps = sampler_class.num_steps_for_nfe(nfe)
        rows += [ProtocolRow(solver, float(rho), sampler_class(num_steps, rho), exponential) for rho in rhos]
    return rows


def _center_crop(image: Tensor, size: int, top: int, left: int) -> Tensor:
    return image[..., top : top + size, left : left + size]


def evaluation_images(
    loader: Iterable[Mapping[str, Any]], device: torch.device, max_images: int | None = None, crop: int | None = None
) -> Iterator[EvaluationImage]:
    """Pairs of a BasicSR paired loader (batch size 1), at most `max_images`, each centre-cropped to `crop` LR
    pixels (and the matching HR pixels) when `crop` is given and smaller than the image."""
    for index, data in enumerate(loader):
        if max_images is not None and index >= max_images:
            return
        lq, gt = data["lq"].to(device), data["gt"].to(device)
        if crop is not None and min(lq.shape[-2:]) > crop:
            scale = gt.shape[-1] // lq.shape[-1]
            top, left = (lq.shape[-2] - crop) // 2, (lq.shape[-1] - crop) // 2
            lq = _center_crop(lq, crop, top, left)
            gt = _center_crop(gt, crop * scale, top * scale, left * scale)
        name = str(data["lq_path"][0]).replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        yield EvaluationImage(name, lq, gt)


def score_rows(
    model: Any,
    rows: list[ProtocolRow],
    images: Iterable[EvaluationImage],
    *,
    seed: int,
    crop_border: int,
    test_y_channel: bool = False,
    lpips: LpipsDistance | None = None,
) -> list[RowResult]:
    """Super-resolve every image with every row (`model.super_resolve`, the same noise `seed` for all) and
    score it: PSNR / SSIM as BasicSR computes them (8-bit, `crop_border`), LPIPS on the [0, 1] tensors."""
    results = [RowResult(row) for row in rows]
    for image in images:
        gt_image = tensor2img([image.gt.detach().cpu()])
        for result in results:
            output, nfe = model.super_resolve(image.lq, result.row.sampler, seed, result.row.schedule)
            sr_image = tensor2img([output.detach().cpu()])
            result.psnrs.append(float(calculate_psnr(sr_image, gt_image, crop_border, test_y_channel=test_y_channel)))
            result.ssims.append(float(calculate_ssim(sr_image, gt_image, crop_border, test_y_channel=test_y_channel)))
            result.nfe_counts.append(int(nfe))
            if lpips is not None:
                result.lpipses.append(float(lpips(output, image.gt).mean()))
    return results


def lpips_distance(net: str = "alex", backbone_path: str | None = None) -> LpipsDistance:
    """The core's LPIPS on (B, 3, H, W) RGB in [0, 1] -> (B,), on the images' device. Built now, so that missing
    weights fail before any sampling: api.MissingWeightsError naming the file, `basicsr weights fetch` and
    --no-lpips."""
    if os.environ.get(api.RANDOM_INIT_ENV) != "1":
        backbone_path = str(api.resolve_weights(
            backbone_path, what=f"LPIPS: {net} backbone (torchvision ImageNet weights)", option_key="--lpips-backbone",
            default_name=LPIPS_BACKBONE_FILES[net], disable_hint="rerun with --no-lpips",
        ))
    model = api.build_lpips(net, backbone_path, option_key="--lpips-backbone")

    def distance(sr: Tensor, hr: Tensor) -> Tensor:
        with torch.no_grad():
            return model.to(sr.device)(sr.float() * 2 - 1, hr.float() * 2 - 1).reshape(-1)

    return distance
