"""Parameters and time per training iteration of RRDB-1/2/5/10/20 and EDSR-baseline (x4), back to back.

Each network is built from the shipped option file's `network_g` (random weights) and timed on the same
random batch: forward, L1 loss, backward, Adam step. Ratios are against EDSR-baseline measured in the same run.

    python benchmarks/baselines_depth.py --batch 4 --patch 32 --iters 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

import srode_plugins.api as api

OPTIONS = Path(__file__).resolve().parents[1] / "plugins" / "srode-plugin-baselines" / "srode_baselines" / "options"
NETWORKS = ("EDSR_baseline_x4", "RRDB_1B_x4", "RRDB_2B_x4", "RRDB_5B_x4", "RRDB_10B_x4", "RRDB_20B_x4")


def seconds_per_iteration(net: torch.nn.Module, lr: torch.Tensor, hr: torch.Tensor, iters: int, warmup: int) -> float:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    timings = []
    for step in range(warmup + iters):
        if lr.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(net(lr), hr).backward()
        optimizer.step()
        if lr.is_cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            timings.append(time.perf_counter() - start)
    return sorted(timings)[len(timings) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=32, help="LR patch side (HR = 4x)")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per network (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = api.select_device(args.device)
    torch.manual_seed(0)
    lr = torch.rand(args.batch, 3, args.patch, args.patch, device=device)
    hr = torch.rand(args.batch, 3, 4 * args.patch, 4 * args.patch, device=device)
    rows = []
    for name in NETWORKS:
        network_opt = yaml.safe_load((OPTIONS / f"{name}_DIV2K.yml").read_text())["network_g"]
        net = api.build_component("archs", network_opt).to(device).train()
        params = sum(p.numel() for p in net.parameters())
        rows.append((name, params, seconds_per_iteration(net, lr, hr, args.iters, args.warmup)))
        del net
    base_params, base_seconds = rows[0][1], rows[0][2]
    print(f"\ndevice {device}, batch {args.batch}, LR patch {args.patch}x{args.patch}, x4, median of {args.iters}.\n")
    print("| network | params (M) | params vs EDSR-baseline | s / iteration | time vs EDSR-baseline |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, params, seconds in rows:
        print(
            f"| {name} | {params / 1e6:.2f} | {params / base_params:.2f}x | {seconds:.4f} | "
            f"{seconds / base_seconds:.2f}x |"
        )


if __name__ == "__main__":
    main()
