"""Self-ensemble (x8) cost and PSNR gain on the held-out demo photos, against the plain forward and bicubic.

Trains the shipped EDSR-baseline demo option for a short schedule (or loads --weights), then upsamples the
held-out demo photos three ways in the same process and prints one Markdown table.

    python benchmarks/baselines_self_ensemble.py --scale 2 --iters 300
    python benchmarks/baselines_self_ensemble.py --scale 2 --weights experiments/.../net_g_latest.pth
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import srode_plugins.api as api

# isort: split
from srode_baselines.heldout import heldout_scores
from srode_baselines.scale_transfer import load_basicsr_params

OPTIONS = Path(__file__).resolve().parents[1] / "plugins" / "srode-plugin-baselines" / "srode_baselines" / "options"


def trained_network(scale: int, iters: int, lr: float, batch: int, patch: int) -> torch.nn.Module:
    from srode_plugins.engine.train import train

    overrides = [
        f"train.total_iter={iters}",
        f"train.optim_g.lr={lr}",
        f"train.scheduler.milestones=[{iters}]",
        f"datasets.train.batch_size_per_gpu={batch}",
        f"datasets.train.gt_size={patch * scale}",
        "logger.use_tb_logger=false",
        f"logger.save_checkpoint_freq={10**9}",
        f"val.val_freq={10**9}",
    ]
    with tempfile.TemporaryDirectory() as root:
        summary = train(str(OPTIONS / f"EDSR_baseline_x{scale}_demo.yml"), overrides=overrides, root=Path(root))
    return summary.model.net_g


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=2, choices=[2, 3, 4])
    parser.add_argument("--weights", type=Path, help="EDSR-baseline checkpoint at --scale (skips training)")
    parser.add_argument("--iters", type=int, default=300, help="training iterations when no --weights")
    parser.add_argument("--lr", type=float, default=5e-4, help="training learning rate when no --weights")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=48, help="LR training patch side")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = api.select_device(args.device)
    if args.weights:
        net = api.build_component(
            "archs",
            {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_block": 16, "upscale": args.scale},
        )
        net.load_state_dict(load_basicsr_params(args.weights, "params_ema"), strict=True)
        origin = f"weights {args.weights}"
    else:
        net = trained_network(args.scale, args.iters, args.lr, args.batch, args.patch)
        origin = f"EDSR-baseline trained {args.iters} iterations on the demo data (lr {args.lr}, batch {args.batch})"
    scores = heldout_scores(net, args.scale, device)
    plain = scores["network"]
    print(f"\nx{args.scale}, {origin}; device {device}; held-out demo photos, Y channel, border {args.scale}.\n")
    print("| method | PSNR (dB) | SSIM | time (s) | time vs plain | PSNR vs plain (dB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, score in scores.items():
        print(
            f"| {name} | {score.psnr:.2f} | {score.ssim:.4f} | {score.seconds:.3f} | "
            f"{score.seconds / plain.seconds:.2f}x | {score.psnr - plain.psnr:+.3f} |"
        )


if __name__ == "__main__":
    main()
