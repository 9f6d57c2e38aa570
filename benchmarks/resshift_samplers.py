"""ResShift samplers side by side: throughput at NFE 4/8/15 and quality at equal NFE on the demo data.

1. Trains the demo's tiny pixel-space Swin-UNet (srode_resshift options/resshift_x4_demo.yml) on the embedded
   demo training photos for --train-iters steps (continuous time, x0 MSE, no EMA unless --ema-decay; from
   --init when fine-tuning, optionally with --permute-channels), or loads --checkpoint. With --out the weights
   are written there every 500 iterations and at the end.
2. Checks the denoiser: PSNR vs HR of its x0 prediction at a few t, next to the PSNR of the noisy input x_t
   itself (a usable denoiser beats x_t at small t) and of bicubic upsampling.
3. Throughput: SR images per second of each sampler at NFE budgets 4, 8, 15, as a ratio to the discrete
   ResShift sampler at the same budget (measured in this run).
4. Quality: PSNR and SSIM vs HR on 64x64 tiles of the held-out demo photos per sampler and NFE, PSNR vs the
   converged ODE solution (Heun in sigma, --reference-steps points, same prior noise) for the ODE samplers,
   and the NFE at which each sampler first reaches the discrete sampler's score at 15 steps, per metric (for
   the ODE distance: the NFE at which it comes within ODE_MATCH_DB of the converged solution).
   LPIPS joins the metrics only where the `lpips` package and its AlexNet backbone file are present (no
   downloads; --lpips-backbone or the torch cache). With --out, a PNG of sample outputs per tile: one row per
   sampler, one column per NFE.

    PYTHONPATH=.:plugins/srode-plugin-resshift python benchmarks/resshift_samplers.py --device cuda --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from srode_resshift.denoiser import ResShiftDenoiser
from srode_resshift.marginal import q_sample
from srode_resshift.samplers import (
    DiscreteResShiftSampler,
    DPMSolverPP2MSampler,
    EulerMaruyamaSampler,
    EulerSampler,
    HeunSampler,
    ResShiftSampler,
)
from srode_resshift.schedules import ContinuousPowerSchedule
from srode_resshift.training import predict_x0_on_forward_samples
from srode_resshift.unet import UNetModelSwin
from tqdm import tqdm

from srode_plugins import api  # applies the BasicSR compat patches before basicsr.metrics is imported
from srode_plugins.data.demo import demo_dataset

SCALE = 4
TILE = 64  # HR side of the held-out tiles
DEMO_OPTIONS = Path(__file__).resolve().parents[1] / "plugins/srode-plugin-resshift/srode_resshift/options"
BASELINE = "discrete (baseline)"
STOCHASTIC = (BASELINE, "Euler-Maruyama, t grid")  # no deterministic ODE solution to compare with

SAMPLERS: dict[str, Callable[[int], ResShiftSampler]] = {
    BASELINE: lambda nfe: DiscreteResShiftSampler(nfe),
    "Euler, t grid rho=1": lambda nfe: EulerSampler(nfe, grid="t", rho=1.0),
    "Heun (w in sigma), t grid rho=1": lambda nfe: HeunSampler(HeunSampler.num_steps_for_nfe(nfe), grid="t", rho=1.0),
    "Euler, sigma grid rho=7": lambda nfe: EulerSampler(nfe, grid="sigma", rho=7.0),
    "Heun (EDM: w in sigma), sigma grid rho=7": lambda nfe: HeunSampler(
        HeunSampler.num_steps_for_nfe(nfe), grid="sigma", rho=7.0
    ),
    "Euler-Maruyama, t grid": lambda nfe: EulerMaruyamaSampler(nfe, grid="t", rho=1.0),
    "DPM-Solver++(2M), sigma": lambda nfe: DPMSolverPP2MSampler(nfe, grid="sigma", rho=7.0),
}


def read_rgb(path: Path) -> torch.Tensor:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def load_pairs(hr_dir: Path, lr_dir: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(read_rgb(hr), read_rgb(lr_dir / hr.name)) for hr in sorted(hr_dir.glob("*.png"))]


def augment(gt: torch.Tensor, lq: torch.Tensor, code: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One of the 8 flips / quarter turns (code 0..7), applied alike to an HR patch and its LR patch."""
    if code & 4:
        gt, lq = gt.flip(-1), lq.flip(-1)
    return torch.rot90(gt, code & 3, (-2, -1)), torch.rot90(lq, code & 3, (-2, -1))


def random_patches(
    pairs, count: int, hr_size: int, generator: torch.Generator, permute_channels: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` aligned random (HR hr_size^2, LR (hr_size/4)^2) patch pairs with random flips / quarter turns and,
    with `permute_channels`, a random order of the RGB channels (bicubic downscaling commutes with both)."""
    lr_size = hr_size // SCALE
    gts, lqs = [], []
    for _ in range(count):
        hr, lr = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
        top = int(torch.randint(lr.shape[1] - lr_size + 1, (1,), generator=generator))
        left = int(torch.randint(lr.shape[2] - lr_size + 1, (1,), generator=generator))
        gt, lq = augment(
            hr[:, top * SCALE : (top + lr_size) * SCALE, left * SCALE : (left + lr_size) * SCALE],
            lr[:, top : top + lr_size, left : left + lr_size],
            int(torch.randint(8, (1,), generator=generator)),
        )
        if permute_channels:
            order = torch.randperm(3, generator=generator)
            gt, lq = gt[order], lq[order]
        gts.append(gt)
        lqs.append(lq)
    return torch.stack(gts), torch.stack(lqs)


def held_out_tiles(pairs, hr_size: int, count: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping HR/LR tiles of every held-out photo; `count` of them evenly spread over all (None: all)."""
    lr_size = hr_size // SCALE
    gts, lqs = [], []
    for hr, lr in pairs:
        for top in range(0, lr.shape[1] - lr_size + 1, lr_size):
            for left in range(0, lr.shape[2] - lr_size + 1, lr_size):
                lqs.append(lr[:, top : top + lr_size, left : left + lr_size])
                gts.append(hr[:, top * SCALE : (top + lr_size) * SCALE, left * SCALE : (left + lr_size) * SCALE])
    chosen = range(len(gts)) if count is None else np.unique(np.linspace(0, len(gts) - 1, count).round().astype(int))
    return torch.stack([gts[i] for i in chosen]), torch.stack([lqs[i] for i in chosen])


def upsample(lq: torch.Tensor) -> torch.Tensor:
    return F.interpolate(lq, scale_factor=SCALE, mode="bicubic", align_corners=False)


class WarmedEMA:
    """EMA of a network's weights whose decay ramps up as min(decay, (1 + n) / (10 + n)) over the n updates,
    so that an average taken early does not still carry the random initialisation."""

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.state = {key: value.detach().clone() for key, value in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in net.state_dict().items():
            if value.dtype.is_floating_point:
                self.state[key].lerp_(value, 1.0 - decay)
            else:
                self.state[key].copy_(value)


@dataclass
class TrainingOptions:
    """Continuous-time x0 training: AdamW at `lr` with cosine decay to 1e-5 over `iterations`."""

    iterations: int
    batch: int = 32
    patch: int = 64  # HR side of the training patches
    lr: float = 1e-3
    ema_decay: float = 0.0  # 0: the raw weights are the result
    bf16: bool = False  # autocast the forward pass to bfloat16 (the weights and the optimiser stay fp32)
    permute_channels: bool = False  # shuffle RGB per patch, so colours must come from the input, not a prior
    checkpoint: Path | None = None  # written every 500 iterations and at the end
    losses: list[float] = field(default_factory=list)


def train(net: torch.nn.Module, schedule, pairs, options: TrainingOptions, device: torch.device) -> torch.nn.Module:
    """Train `net` in place in pixel space ([-1, 1]); return it in eval mode holding the final (or EMA) weights."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=options.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(options.iterations, 1), eta_min=1e-5)
    denoiser = ResShiftDenoiser(net, schedule.kappa, schedule.num_timesteps)
    ema = WarmedEMA(net, options.ema_decay) if options.ema_decay else None
    generator = torch.Generator().manual_seed(0)

    def result_weights() -> dict[str, torch.Tensor]:
        return ema.state if ema else net.state_dict()

    for iteration in tqdm(range(options.iterations), desc="training tiny UNet", leave=False):
        gt, lq = random_patches(pairs, options.batch, options.patch, generator, options.permute_channels)
        gt, lq = gt.to(device), lq.to(device)
        x0, y = gt * 2 - 1, upsample(lq) * 2 - 1
        with torch.autocast(device.type, torch.bfloat16, enabled=options.bf16):
            prediction = predict_x0_on_forward_samples(denoiser, schedule, x0, y, lq * 2 - 1, "continuous")
        loss = F.mse_loss(prediction.float(), x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema:
            ema.update(net)
        options.losses.append(loss.item())
        if (iteration + 1) % 500 == 0 or iteration + 1 == options.iterations:
            tqdm.write(f"iteration {iteration + 1}: x0 MSE {np.mean(options.losses[-500:]):.5f} (last 500)")
            if options.checkpoint:
                torch.save(result_weights(), options.checkpoint)
    net.load_state_dict(result_weights())
    return net.eval()


@torch.no_grad()
def super_resolve(net, schedule, sampler: ResShiftSampler, lq: torch.Tensor, seed: int) -> tuple[torch.Tensor, int]:
    generator = torch.Generator(device=lq.device).manual_seed(seed)
    denoise = ResShiftDenoiser(net, schedule.kappa, schedule.num_timesteps).bind(lq * 2 - 1)
    result = sampler.sample(denoise, upsample(lq) * 2 - 1, schedule, generator=generator)
    return ((result.x0 + 1) / 2).clamp(0, 1), result.nfe


def psnr(sr: torch.Tensor, reference: torch.Tensor, crop: int = SCALE) -> float:
    """Mean PSNR (dB) over the batch on 8-bit-rounded RGB, `crop` border pixels removed."""
    height, width = sr.shape[-2:]
    sr = (sr * 255).round()[..., crop : height - crop, crop : width - crop]
    reference = (reference * 255).round()[..., crop : height - crop, crop : width - crop]
    mse = ((sr - reference) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(255.0**2 / mse)).mean())


def ssim(sr: torch.Tensor, reference: torch.Tensor, crop: int = SCALE) -> float:
    """Mean SSIM over the batch (BasicSR's calculate_ssim_pt: RGB, 8-bit-rounded, `crop` border pixels removed)."""
    from basicsr.metrics.psnr_ssim import calculate_ssim_pt

    return float(calculate_ssim_pt((sr * 255).round() / 255, (reference * 255).round() / 255, crop).mean())


def lpips_metric(backbone: Path | None, device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], float] | None:
    """Mean LPIPS (AlexNet) over the batch for images in [0, 1], or None (with the reason printed) when the
    `lpips` package or the backbone weights are missing."""
    try:
        from srode_resshift.perceptual import build_lpips

        model = build_lpips("alex", str(backbone) if backbone else None, option_key="--lpips-backbone").to(device)
    except (ImportError, api.MissingWeightsError) as error:
        print(f"LPIPS not reported (pass --lpips-backbone PATH to add it): {str(error).split('. ')[0]}")
        return None

    @torch.no_grad()
    def score(sr: torch.Tensor, reference: torch.Tensor) -> float:
        return float(model(sr * 2 - 1, reference * 2 - 1).mean())

    return score


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def x0_prediction_rows(net, schedule, gt: torch.Tensor, lq: torch.Tensor, times=(1 / 15, 0.2, 0.5, 1.0)) -> list[str]:
    """PSNR vs HR of x_t ~ q(x_t | x0, y) and of the network's x0 prediction from it, at each t."""
    denoiser = ResShiftDenoiser(net, schedule.kappa, schedule.num_timesteps)
    generator = torch.Generator().manual_seed(0)
    x0, y = gt * 2 - 1, upsample(lq) * 2 - 1
    rows = ["| t | eta(t) | noise std (of [0, 1]) | PSNR of x_t | PSNR of x0 prediction |", "|---|---|---|---|---|"]
    for t in times:
        eta = float(schedule.eta(np.array(t)))
        etas = torch.full((gt.shape[0],), eta, device=gt.device)
        noise = torch.randn(gt.shape, generator=generator).to(gt.device)
        x_t = q_sample(x0, y, etas, schedule.kappa, noise)
        with torch.no_grad():
            prediction = denoiser.predict(x_t, torch.full_like(etas, t), etas, lq * 2 - 1)
        rows.append(
            f"| {t:.3f} | {eta:.4f} | {schedule.kappa * math.sqrt(eta) / 2:.3f} | "
            f"{psnr(((x_t + 1) / 2).clamp(0, 1), gt):.2f} | {psnr(((prediction + 1) / 2).clamp(0, 1), gt):.2f} |"
        )
    return rows


def throughput_table(net, schedule, lq: torch.Tensor, device, budgets=(4, 8, 15), repeats: int = 3) -> list[str]:
    rows = ["| sampler | " + " | ".join(f"NFE<={b}: img/s (x discrete)" for b in budgets) + " |"]
    rows.append("|---" * (len(budgets) + 1) + "|")
    baseline: dict[int, float] = {}
    for name, make in SAMPLERS.items():
        cells = []
        for budget in budgets:
            sampler = make(budget)
            super_resolve(net, schedule, sampler, lq, 0)  # warm-up
            synchronize(device)
            start = time.perf_counter()
            for repeat in range(repeats):
                super_resolve(net, schedule, sampler, lq, repeat)
            synchronize(device)
            rate = repeats * lq.shape[0] / (time.perf_counter() - start)
            baseline.setdefault(budget, rate)
            cells.append(f"{rate:.1f} (x{rate / baseline[budget]:.2f}, NFE {sampler.nfe()})")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


@dataclass
class QualityResult:
    """scores[metric][sampler][nfe], averaged over tiles and seeds; `samples[sampler][nfe]` holds the first
    seed's outputs for the tiles drawn in the PNGs."""

    scores: dict[str, dict[str, dict[int, float]]]
    samples: dict[str, dict[int, torch.Tensor]]
    reference_scores: dict[str, float]
    reference_samples: torch.Tensor


HIGHER_IS_BETTER = {"PSNR": True, "SSIM": True, "LPIPS": False, "PSNR vs ODE": True}
ODE_MATCH_DB = 40.0  # PSNR vs the converged ODE above which a sampler counts as converged (RMS error < 1%)


def measure_quality(net, schedule, gt, lq, budgets, seeds: int, reference_steps: int, lpips, shown: int):
    metrics: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {"PSNR": psnr, "SSIM": ssim}
    if lpips:
        metrics["LPIPS"] = lpips
    reference_sampler = HeunSampler(reference_steps, grid="sigma", rho=7.0, variable="sigma")
    references = [super_resolve(net, schedule, reference_sampler, lq, seed)[0] for seed in range(seeds)]
    reference_scores = {m: float(np.mean([f(ref, gt) for ref in references])) for m, f in metrics.items()}
    scores: dict[str, dict[str, dict[int, float]]] = {metric: {} for metric in [*metrics, "PSNR vs ODE"]}
    samples: dict[str, dict[int, torch.Tensor]] = {}
    for name, make in tqdm(SAMPLERS.items(), desc="quality", leave=False):
        samples[name] = {}
        for metric in scores:
            scores[metric][name] = {}
        for sampler in {make(b).nfe(): make(b) for b in budgets}.values():
            outputs = [super_resolve(net, schedule, sampler, lq, seed)[0] for seed in range(seeds)]
            nfe = sampler.nfe()
            samples[name][nfe] = outputs[0][:shown].cpu()
            for metric, function in metrics.items():
                scores[metric][name][nfe] = float(np.mean([function(sr, gt) for sr in outputs]))
            if name not in STOCHASTIC:
                ode = float(np.mean([psnr(sr, ref, 0) for sr, ref in zip(outputs, references)]))
                scores["PSNR vs ODE"][name][nfe] = ode
    return QualityResult(scores, samples, reference_scores, references[0][:shown].cpu())


def nfe_to_reach(values: dict[int, float], target: float, higher_is_better: bool) -> str:
    """The smallest NFE whose score is at least as good as `target`, or '> largest NFE'."""
    sign = 1.0 if higher_is_better else -1.0
    reached = [nfe for nfe, value in sorted(values.items()) if sign * (value - target) >= 0]
    return str(reached[0]) if reached else f"> {max(values)}"


def quality_tables(result: QualityResult, reference_label: str) -> list[str]:
    """One markdown table per metric: samplers x NFE, and the NFE at which each reaches discrete@15 (for the
    distance to the converged ODE: the NFE at which it comes within ODE_MATCH_DB of it)."""
    lines: list[str] = []
    for metric, per_sampler in result.scores.items():
        columns = sorted({nfe for values in per_sampler.values() for nfe in values})
        digits = 4 if metric in ("SSIM", "LPIPS") else 2
        headers = [metric, *(f"NFE {nfe}" for nfe in columns)]
        if metric == "PSNR vs ODE":
            target = ODE_MATCH_DB
            headers.append(f"NFE to within {ODE_MATCH_DB:g} dB")
        else:
            target = per_sampler[BASELINE][15]  # the budgets always include 15
            headers.append(f"NFE to reach discrete@15 ({target:.{digits}f})")
        lines += ["", "| " + " | ".join(headers) + " |", "|---" * len(headers) + "|"]
        for name, values in per_sampler.items():
            if not values:
                continue
            cells = [f"{values[nfe]:.{digits}f}" if nfe in values else "-" for nfe in columns]
            cells.append(nfe_to_reach(values, target, HIGHER_IS_BETTER[metric]))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if metric in result.reference_scores:
            lines.append(f"\n{reference_label}: {metric} {result.reference_scores[metric]:.{digits}f}")
    return lines


def plot_quality_vs_nfe(scores: dict[str, dict[str, dict]], reference: dict[str, float], path: Path) -> None:
    """PNG of every metric against NFE, one line per sampler; discrete@15 and the converged ODE as levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = {m: {name: {int(nfe): v for nfe, v in values.items()} for name, values in per.items()}
              for m, per in scores.items()}  # NFE keys are strings in the saved JSON
    metrics = [metric for metric in scores if any(scores[metric].values())]
    names = list(dict.fromkeys(name for per in scores.values() for name in per))
    colour = {name: plt.get_cmap("tab10")(index % 10) for index, name in enumerate(names)}  # same in every panel
    figure, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.8), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for name, values in scores[metric].items():
            points = sorted((int(nfe), value) for nfe, value in values.items())
            if points:
                axis.plot(*zip(*points), marker="o", markersize=3, label=name, color=colour[name])
        if metric == "PSNR vs ODE":
            axis.axhline(ODE_MATCH_DB, color="grey", linestyle=":", label=f"{ODE_MATCH_DB:g} dB")
        else:
            axis.axhline(scores[metric][BASELINE][15], color="black", linestyle="--", label="discrete@15")
            if metric in reference:
                axis.axhline(reference[metric], color="grey", linestyle=":", label="converged ODE")
        axis.set_xlabel("NFE (network evaluations)")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        if metric in ("PSNR", "SSIM"):
            low = min(reference.get(metric, np.inf), min(scores[metric][BASELINE].values()))
            axis.set_ylim(bottom=low - (3.0 if metric == "PSNR" else 0.08))
    handles = [plt.Line2D([], [], color=colour[name], marker="o", markersize=3, label=name) for name in names]
    figure.legend(handles=handles, loc="lower center", ncol=min(4, len(names)), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    for axis in axes[0]:
        axis.legend(handles=[h for h in axis.get_lines() if h.get_linestyle() in ("--", ":")], fontsize=7)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def label_strip(text: str, width: int, height: int) -> np.ndarray:
    strip = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, height // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def sample_sheet(result: QualityResult, lq: torch.Tensor, gt: torch.Tensor, tile: int, zoom: int = 2) -> np.ndarray:
    """BGR uint8 sheet for one tile: LR (nearest) / bicubic / HR / converged ODE, then one row per sampler with
    one column per NFE (blank where a sampler has no run at that NFE)."""
    columns = sorted({nfe for per_nfe in result.samples.values() for nfe in per_nfe})
    side, gap, label_width = TILE * zoom, 2, 250

    def cell(image: torch.Tensor | None) -> np.ndarray:
        if image is None:
            return np.full((side, side, 3), 235, np.uint8)
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:, :, ::-1]
        return cv2.resize(array, (side, side), interpolation=cv2.INTER_NEAREST)

    def row(label: str, images: list[torch.Tensor | None]) -> np.ndarray:
        parts = [label_strip(label, label_width, side)]
        for image in images:
            parts += [np.full((side, gap, 3), 255, np.uint8), cell(image)]
        return np.concatenate(parts, axis=1)

    first = [
        F.interpolate(lq[tile : tile + 1].cpu(), scale_factor=SCALE, mode="nearest")[0],
        upsample(lq[tile : tile + 1].cpu()).clamp(0, 1)[0],
        gt[tile].cpu(),
        result.reference_samples[tile],
    ]
    rows = [row("LR | bicubic | HR | converged ODE", first + [None] * (len(columns) - len(first)))]
    header = [label_strip("sampler \\ NFE", label_width, 20)]
    for nfe in columns:
        header += [np.full((20, gap, 3), 255, np.uint8), label_strip(f"NFE {nfe}", side, 20)]
    rows.append(np.concatenate(header, axis=1))
    for name, per_nfe in result.samples.items():
        rows.append(row(name[:34], [per_nfe[nfe][tile] if nfe in per_nfe else None for nfe in columns]))
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-iters", type=int, default=None, help="default: 4000 on CUDA, 100 on CPU")
    parser.add_argument("--batch", type=int, default=32, help="training batch of HR patches")
    parser.add_argument("--patch", type=int, default=64, help="HR side of the training patches (multiple of 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (cosine decay to 1e-5)")
    parser.add_argument("--ema-decay", type=float, default=0.0, help="keep a warmed-up EMA and report it (0: off)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast in training (sampling stays fp32)")
    parser.add_argument("--permute-channels", action="store_true", help="random RGB order per training patch")
    parser.add_argument("--init", type=Path, default=None, help="state dict to start training from (fine-tuning)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained tiny-UNet state dict (skips training)")
    parser.add_argument("--train-only", action="store_true", help="stop after training (and the denoiser check)")
    parser.add_argument("--seeds", type=int, default=2, help="prior-noise seeds averaged in the quality table")
    parser.add_argument("--tiles", type=int, default=None, help="N held-out tiles evenly spread (default all)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[2, 3, 4, 5, 6, 8, 10, 12, 15], help="NFE budgets")
    parser.add_argument("--reference-steps", type=int, default=100, help="grid points of the converged-ODE Heun")
    parser.add_argument("--lpips-backbone", type=Path, default=None, help="alexnet-owt-7be5be79.pth (local file)")
    parser.add_argument("--sheets", type=int, default=2, help="tiles drawn as PNG sample sheets under --out")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput table")
    parser.add_argument("--throughput-only", action="store_true", help="stop after the throughput table")
    parser.add_argument("--out", type=Path, default=None, help="folder for the weights, results JSON and PNGs")
    args = parser.parse_args()
    device = torch.device(args.device)
    iterations = args.train_iters if args.train_iters is not None else (4000 if device.type == "cuda" else 100)
    torch.manual_seed(0)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)

    config = yaml.safe_load((DEMO_OPTIONS / "resshift_x4_demo.yml").read_text())
    network_options = {k: v for k, v in config["network_g"].items() if k != "type"}
    schedule = ContinuousPowerSchedule(**{k: v for k, v in config["resshift"]["schedule"].items() if k != "type"})
    net = UNetModelSwin(**network_options).to(device)
    paths = demo_dataset(SCALE)
    val_gt, val_lq = held_out_tiles(load_pairs(paths.val_hr, paths.val_lr), TILE, args.tiles)
    val_gt, val_lq = val_gt.to(device), val_lq.to(device)

    options = TrainingOptions(
        iterations, args.batch, args.patch, args.lr, args.ema_decay, args.bf16, args.permute_channels
    )
    if args.checkpoint or args.init:
        net.load_state_dict(torch.load(args.checkpoint or args.init, map_location=device, weights_only=True))
    if args.checkpoint:
        net.eval()
    else:
        options.checkpoint = args.out / "tiny_unet_demo.pth" if args.out else None
        start = time.perf_counter()
        net = train(net, schedule, load_pairs(paths.train_hr, paths.train_lr), options, device)
        losses = options.losses
        print(
            f"trained {iterations} iterations ({args.batch} x {args.patch}x{args.patch} HR patches, ema_decay "
            f"{args.ema_decay:g}, from {args.init or 'random init'}) in {time.perf_counter() - start:.0f} s; "
            f"x0 MSE {np.mean(losses[:50]):.4f} (first 50) -> {np.mean(losses[-50:]):.4f} (last 50)"
        )
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    bicubic = upsample(val_lq).clamp(0, 1)
    print(
        f"device: {device_name}; held-out tiles: {val_gt.shape[0]} x {TILE}x{TILE} HR; bicubic PSNR "
        f"{psnr(bicubic, val_gt):.2f} dB, SSIM {ssim(bicubic, val_gt):.4f}"
    )
    print("\nDenoiser check (x0 prediction vs HR, one draw of x_t per tile):")
    print("\n".join(x0_prediction_rows(net, schedule, val_gt, val_lq)))
    if args.train_only:
        return

    if not args.no_throughput:
        print("\nThroughput (batch of 16 LR 16x16 -> HR 64x64):")
        print("\n".join(throughput_table(net, schedule, val_lq[:16], device)))
    if args.throughput_only:
        return
    lpips = lpips_metric(args.lpips_backbone, device)
    budgets = sorted(set(args.budgets) | {15})
    shown = min(args.sheets, val_gt.shape[0])
    result = measure_quality(net, schedule, val_gt, val_lq, budgets, args.seeds, args.reference_steps, lpips, shown)
    reference = f"converged ODE (Heun in sigma, {args.reference_steps} points, {2 * args.reference_steps - 1} NFE)"
    print(f"\nQuality on the held-out tiles (mean over {args.seeds} noise seeds):")
    print("\n".join(quality_tables(result, reference)))
    if args.out:
        for tile in range(shown):
            cv2.imwrite(str(args.out / f"resshift_samples_tile{tile}.png"), sample_sheet(result, val_lq, val_gt, tile))
        summary = {"scores": result.scores, "converged_ode": result.reference_scores, "train_losses": options.losses}
        (args.out / "resshift_samplers.json").write_text(json.dumps(summary))
        plot_quality_vs_nfe(result.scores, result.reference_scores, args.out / "resshift_quality_vs_nfe.png")
    if not math.isfinite(result.scores["PSNR"][BASELINE][15]):
        raise SystemExit("non-finite baseline PSNR")


if __name__ == "__main__":
    main()
