"""ResShift samplers side by side: throughput at NFE 4/8/15 and quality at equal NFE on the demo data.

1. Trains the demo's tiny pixel-space Swin-UNet (srode_resshift options/resshift_x4_demo.yml) on the embedded
   demo training photos for --train-iters steps (continuous time, x0 MSE), or loads --checkpoint.
2. Throughput: SR images per second of each sampler at NFE budgets 4, 8, 15, as a ratio to the discrete
   ResShift sampler at the same budget (measured in this run).
3. Quality: PSNR vs HR on 64x64 tiles of the held-out demo photos per sampler and NFE, and PSNR vs the
   converged ODE solution (Heun, 100 sigma-grid points, same prior noise) for the ODE samplers; the NFE at
   which each sampler first reaches the discrete sampler's PSNR at 15 steps.
LPIPS is reported only where the `lpips` package and its AlexNet backbone file are present (no downloads).

    PYTHONPATH=.:plugins/srode-plugin-resshift python benchmarks/resshift_samplers.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from srode_resshift.denoiser import ResShiftDenoiser
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

from srode_plugins.data.demo import demo_dataset

SCALE = 4
DEMO_OPTIONS = Path(__file__).resolve().parents[1] / "plugins/srode-plugin-resshift/srode_resshift/options"

SAMPLERS: dict[str, Callable[[int], ResShiftSampler]] = {
    "discrete (baseline)": lambda nfe: DiscreteResShiftSampler(nfe),
    "Euler, t grid rho=1": lambda nfe: EulerSampler(nfe, grid="t", rho=1.0),
    "Heun, t grid rho=1": lambda nfe: HeunSampler(HeunSampler.num_steps_for_nfe(nfe), grid="t", rho=1.0),
    "Euler, sigma grid rho=7": lambda nfe: EulerSampler(nfe, grid="sigma", rho=7.0),
    "Heun (EDM: w in sigma), sigma grid rho=7": lambda nfe: HeunSampler(
        HeunSampler.num_steps_for_nfe(nfe), grid="sigma", rho=7.0, variable="sigma"
    ),
    "Euler-Maruyama, t grid": lambda nfe: EulerMaruyamaSampler(nfe, grid="t", rho=1.0),
    "DPM-Solver++(2M), sigma": lambda nfe: DPMSolverPP2MSampler(nfe, grid="sigma", rho=7.0),
}


def read_rgb(path: Path) -> torch.Tensor:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def load_pairs(hr_dir: Path, lr_dir: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(read_rgb(hr), read_rgb(lr_dir / hr.name)) for hr in sorted(hr_dir.glob("*.png"))]


def random_patches(pairs, count: int, hr_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    lr_size = hr_size // SCALE
    gts, lqs = [], []
    for _ in range(count):
        hr, lr = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
        top = int(torch.randint(lr.shape[1] - lr_size + 1, (1,), generator=generator))
        left = int(torch.randint(lr.shape[2] - lr_size + 1, (1,), generator=generator))
        lqs.append(lr[:, top : top + lr_size, left : left + lr_size])
        gts.append(hr[:, top * SCALE : (top + lr_size) * SCALE, left * SCALE : (left + lr_size) * SCALE])
    return torch.stack(gts), torch.stack(lqs)


def held_out_tiles(pairs, hr_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    lr_size = hr_size // SCALE
    gts, lqs = [], []
    for hr, lr in pairs:
        for top in range(0, lr.shape[1] - lr_size + 1, lr_size):
            for left in range(0, lr.shape[2] - lr_size + 1, lr_size):
                lqs.append(lr[:, top : top + lr_size, left : left + lr_size])
                gts.append(hr[:, top * SCALE : (top + lr_size) * SCALE, left * SCALE : (left + lr_size) * SCALE])
    return torch.stack(gts), torch.stack(lqs)


def upsample(lq: torch.Tensor) -> torch.Tensor:
    return F.interpolate(lq, scale_factor=SCALE, mode="bicubic", align_corners=False)


def train(net, schedule, pairs, iterations: int, batch: int, device) -> tuple[torch.nn.Module, list[float]]:
    """Continuous-time x0 training in pixel space ([-1, 1]), cosine learning rate; returns the net and losses."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(iterations, 1), eta_min=1e-5)
    denoiser = ResShiftDenoiser(net, schedule.kappa, schedule.num_timesteps)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in tqdm(range(iterations), desc="training tiny UNet", leave=False):
        gt, lq = random_patches(pairs, batch, 64, generator)
        gt, lq = gt.to(device), lq.to(device)
        x0, y = gt * 2 - 1, upsample(lq) * 2 - 1
        prediction = predict_x0_on_forward_samples(denoiser, schedule, x0, y, lq * 2 - 1, "continuous")
        loss = F.mse_loss(prediction, x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return net.eval(), losses


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


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


def quality_table(
    net, schedule, gt, lq, budgets, seeds: int, reference_steps: int = 100
) -> tuple[list[str], dict[str, dict[int, float]]]:
    reference_sampler = HeunSampler(reference_steps, grid="sigma", rho=7.0, variable="sigma")
    references = [super_resolve(net, schedule, reference_sampler, lq, seed)[0] for seed in range(seeds)]
    scores: dict[str, dict[int, float]] = {}
    solver_error: dict[str, dict[int, float]] = {}
    for name, make in tqdm(SAMPLERS.items(), desc="quality", leave=False):
        scores[name], solver_error[name] = {}, {}
        for budget in budgets:
            sampler = make(budget)
            outputs = [super_resolve(net, schedule, sampler, lq, seed) for seed in range(seeds)]
            nfe = outputs[0][1]
            scores[name][nfe] = float(np.mean([psnr(sr, gt) for sr, _ in outputs]))
            solver_error[name][nfe] = float(np.mean([psnr(sr, ref, 0) for (sr, _), ref in zip(outputs, references)]))
    target = scores["discrete (baseline)"][15]
    rows = ["| sampler | NFE: PSNR vs HR / PSNR vs converged ODE (dB) | NFE to reach discrete@15 |", "|---|---|---|"]
    for name in SAMPLERS:
        cells = []
        for nfe, value in sorted(scores[name].items()):
            ode = "" if name.startswith(("discrete", "Euler-Maruyama")) else f" / {solver_error[name][nfe]:.1f}"
            cells.append(f"{nfe}: {value:.2f}{ode}")
        reached = [nfe for nfe, value in sorted(scores[name].items()) if value >= target]
        rows.append(f"| {name} | " + ", ".join(cells) + f" | {reached[0] if reached else '> 15'} |")
    return rows, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-iters", type=int, default=None, help="default: 4000 on CUDA, 100 on CPU")
    parser.add_argument("--batch", type=int, default=32, help="training batch of 64x64 HR patches")
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained tiny-UNet state dict (skips training)")
    parser.add_argument("--seeds", type=int, default=2, help="prior-noise seeds averaged in the quality table")
    parser.add_argument("--tiles", type=int, default=None, help="use only the first N held-out tiles (default all)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[2, 3, 4, 5, 6, 8, 10, 12, 15], help="NFE budgets")
    parser.add_argument("--reference-steps", type=int, default=100, help="grid points of the converged-ODE Heun")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput table")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json and the trained weights")
    args = parser.parse_args()
    device = torch.device(args.device)
    iterations = args.train_iters if args.train_iters is not None else (4000 if device.type == "cuda" else 100)
    torch.manual_seed(0)

    config = yaml.safe_load((DEMO_OPTIONS / "resshift_x4_demo.yml").read_text())
    network_options = {k: v for k, v in config["network_g"].items() if k != "type"}
    schedule = ContinuousPowerSchedule(**{k: v for k, v in config["resshift"]["schedule"].items() if k != "type"})
    net = UNetModelSwin(**network_options).to(device)
    paths = demo_dataset(SCALE)
    train_pairs = load_pairs(paths.train_hr, paths.train_lr)
    val_gt, val_lq = held_out_tiles(load_pairs(paths.val_hr, paths.val_lr), 64)
    val_gt, val_lq = val_gt[: args.tiles].to(device), val_lq[: args.tiles].to(device)

    if args.checkpoint:
        net.load_state_dict(torch.load(args.checkpoint, map_location=device, weights_only=True))
        net.eval()
        losses: list[float] = []
    else:
        start = time.perf_counter()
        net, losses = train(net, schedule, train_pairs, iterations, args.batch, device)
        print(
            f"trained {iterations} iterations in {time.perf_counter() - start:.0f} s; x0 MSE "
            f"{np.mean(losses[:50]):.4f} (first 50) -> {np.mean(losses[-50:]):.4f} (last 50)"
        )
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    bicubic = psnr(upsample(val_lq).clamp(0, 1), val_gt)
    print(f"device: {device_name}; held-out tiles: {val_gt.shape[0]} x 64x64 HR; bicubic PSNR {bicubic:.2f} dB")

    if not args.no_throughput:
        print("\nThroughput (batch of 16 LR 16x16 -> HR 64x64):")
        print("\n".join(throughput_table(net, schedule, val_lq[:16], device)))
    budgets = sorted(set(args.budgets) | {15})
    print(f"\nQuality on the held-out tiles (mean over {args.seeds} noise seeds):")
    rows, scores = quality_table(net, schedule, val_gt, val_lq, budgets, args.seeds, args.reference_steps)
    print("\n".join(rows))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "resshift_samplers.json").write_text(json.dumps({"psnr": scores, "train_losses": losses[::50]}))
        if not args.checkpoint:
            torch.save(net.state_dict(), args.out / "tiny_unet_demo.pth")
    if not math.isfinite(scores["discrete (baseline)"][15]):
        raise SystemExit("non-finite baseline PSNR")


if __name__ == "__main__":
    main()
