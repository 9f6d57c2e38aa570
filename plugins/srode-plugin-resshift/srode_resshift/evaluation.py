"""Sampler sweeps for `basicsr test`: the sampler x rho x NFE grid, its table and the sample-grid images.

A sweep is written in the option file under ``val.sampler_sweep``::

    sampler_sweep:
      samplers:                 # templates; a missing num_steps / rho is filled from the lists below
        - {type: DiscreteResShiftSampler, num_steps: 15}
        - {type: EulerSampler, grid: t}
        - {type: HeunSampler, grid: t}
      rho: [1, 2, 3]
      nfe: [4, 8, 15]
      lpips: {net: alex, backbone_path: ~}   # or false
      grid_images: 4                          # sample grids written for the first N images
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["SweepRow", "SweepSpec", "expand_sweep", "format_sweep_markdown", "format_sweep_table", "side_by_side"]


@dataclass
class SweepSpec:
    """Parsed ``val.sampler_sweep``; see the module docstring."""

    samplers: list[dict[str, Any]]
    rho: list[float] = field(default_factory=lambda: [1.0])
    nfe: list[int] = field(default_factory=lambda: [15])
    lpips: dict[str, Any] | None = None
    grid_images: int = 4
    seed: int = 0

    @classmethod
    def from_options(cls, spec: Mapping[str, Any]) -> SweepSpec:
        unknown = set(spec) - {"samplers", "rho", "nfe", "lpips", "grid_images", "seed"}
        if unknown:
            raise ValueError(
                f"unknown key(s) {sorted(unknown)} in 'val.sampler_sweep'; "
                "allowed: samplers, rho, nfe, lpips, grid_images, seed"
            )
        samplers = spec.get("samplers")
        if not samplers or not all(isinstance(s, Mapping) and "type" in s for s in samplers):
            raise ValueError("'val.sampler_sweep.samplers' must be a non-empty list of sampler options with 'type'")
        lpips = spec.get("lpips", False)
        if lpips is True:
            lpips = {}
        return cls(
            samplers=[dict(s) for s in samplers],
            rho=[float(r) for r in spec.get("rho", [1.0])],
            nfe=[int(n) for n in spec.get("nfe", [15])],
            lpips=dict(lpips) if lpips else None,
            grid_images=int(spec.get("grid_images", 4)),
            seed=int(spec.get("seed", 0)),
        )


@dataclass
class SweepRow:
    """One line of the table: the sampler's description plus metrics averaged over the images."""

    description: dict[str, object]
    psnr: float = 0.0
    ssim: float = 0.0
    lpips: float | None = None


def expand_sweep(spec: SweepSpec, sampler_class: Callable[[str], type]) -> list[dict[str, Any]]:
    """Sampler options of every sweep row: each template x rho (grid samplers without rho) x nfe (without
    num_steps). `sampler_class(type_name)` returns the class, used for num_steps_for_nfe and grid detection."""
    rows: list[dict[str, Any]] = []
    for template in spec.samplers:
        cls = sampler_class(template["type"])
        is_grid = bool(getattr(cls, "uses_grid", False))
        rhos = [template.get("rho")] if "rho" in template or not is_grid else spec.rho
        budgets = [None] if "num_steps" in template else spec.nfe
        for rho in rhos:
            for budget in budgets:
                option = dict(template)
                if is_grid:
                    option["rho"] = rho
                if budget is not None:
                    option["num_steps"] = cls.num_steps_for_nfe(budget)
                if option not in rows:
                    rows.append(option)
    return rows


def format_sweep_table(rows: Sequence[SweepRow], title: str) -> str:
    """Fixed-width table in the seed's Table-1 layout: sampler | grid | rho | steps | NFE | PSNR | SSIM | LPIPS."""
    header = f"{'sampler':<22}{'grid':>6}{'rho':>6}{'steps':>7}{'NFE':>6}{'PSNR':>9}{'SSIM':>8}{'LPIPS':>8}"
    lines = [title, header, "-" * len(header)]
    for row in rows:
        d = row.description
        lpips = "-" if row.lpips is None else f"{row.lpips:.4f}"
        lines.append(
            f"{d['sampler']!s:<22}{d['grid']!s:>6}{d['rho']!s:>6}{d['steps']!s:>7}{d['nfe']!s:>6}"
            f"{row.psnr:>9.3f}{row.ssim:>8.4f}{lpips:>8}"
        )
    return "\n".join(lines)


def format_sweep_markdown(rows: Sequence[SweepRow]) -> str:
    """The same table as Markdown, for the results folder."""
    lines = ["| sampler | grid | rho | steps | NFE | PSNR | SSIM | LPIPS |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        d = row.description
        lpips = "-" if row.lpips is None else f"{row.lpips:.4f}"
        lines.append(
            f"| {d['sampler']} | {d['grid']} | {d['rho']} | {d['steps']} | {d['nfe']} | {row.psnr:.3f} "
            f"| {row.ssim:.4f} | {lpips} |"
        )
    return "\n".join(lines) + "\n"


def side_by_side(images: Sequence[Tensor], gap: int = 4) -> Tensor:
    """Images (1, C, H, W) of one size, left to right with a white gap: (1, C, H, n W + (n-1) gap)."""
    height = images[0].shape[-2]
    spacer = torch.ones(*images[0].shape[:-1], gap, dtype=images[0].dtype)
    parts: list[Tensor] = []
    for index, image in enumerate(images):
        if image.shape[-2] != height:
            raise ValueError(f"side_by_side needs equal heights, got {image.shape[-2]} and {height}")
        if index:
            parts.append(spacer)
        parts.append(image.detach().cpu())
    return torch.cat(parts, dim=-1)
