"""Neural-ODE SR: time/iteration and peak memory of discrete vs adjoint vs ANODE backprop, dopri5 vs fixed-step
RK4, against RRDB-5 / RRDB-20, on one demo batch. Each configuration runs in its own process (clean peak memory).

Ratios are against `discrete-dopri5` measured in the same invocation. Random weights (no pretrained files).

    python benchmarks/node_backprop.py --batch 4 --gt-size 48 --iters 3
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

import srode_plugins.api as api

ODE_NET = {"num_feat": 64, "ode_layers": 2, "time_dependent": True, "augment_channels": 16}
CONFIGS: dict[str, dict] = {
    "discrete-dopri5": {"solver": "dopri5", "rtol": 1e-3, "atol": 1e-3, "backprop": "discrete"},
    "adjoint-dopri5": {"solver": "dopri5", "rtol": 1e-3, "atol": 1e-3, "backprop": "adjoint"},
    "adjoint-dopri5-seminorm": {
        "solver": "dopri5",
        "rtol": 1e-3,
        "atol": 1e-3,
        "backprop": "adjoint",
        "adjoint_seminorm": True,
    },
    "discrete-fixed_rk4": {"solver": "fixed_rk4", "step_size": 0.2, "backprop": "discrete"},
    "anode-fixed_rk4": {"solver": "fixed_rk4", "step_size": 0.2, "backprop": "anode"},
    "RRDB-5": {"num_block": 5},
    "RRDB-20": {"num_block": 20},
}
BASELINE = "discrete-dopri5"


def demo_batch(batch: int, gt_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` aligned random crops of the demo training photos: LR (B, 3, s/4, s/4), HR (B, 3, s, s) in [0, 1]."""
    paths = api.demo_dataset(4)
    names = sorted(p.name for p in paths.train_hr.iterdir())
    rng = np.random.default_rng(seed)
    lqs, gts = [], []
    lq_size = gt_size // 4
    for index in range(batch):
        name = names[index % len(names)]
        lr = np.asarray(Image.open(paths.train_lr / name).convert("RGB"), dtype=np.float32) / 255.0
        hr = np.asarray(Image.open(paths.train_hr / name).convert("RGB"), dtype=np.float32) / 255.0
        top = int(rng.integers(0, lr.shape[0] - lq_size))
        left = int(rng.integers(0, lr.shape[1] - lq_size))
        lqs.append(lr[top : top + lq_size, left : left + lq_size])
        gts.append(hr[4 * top : 4 * (top + lq_size), 4 * left : 4 * (left + lq_size)])
    to_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return to_tensor(lqs), to_tensor(gts)


def build(name: str) -> torch.nn.Module:
    options = CONFIGS[name]
    if name.startswith("RRDB"):
        rrdb = api.get_component("archs", "RRDBNet")
        return rrdb(num_in_ch=3, num_out_ch=3, num_feat=64, num_grow_ch=32, scale=4, **options)
    return api.get_component("archs", "NODESRNet")(**ODE_NET, **options)


def run_child(name: str, args: argparse.Namespace) -> dict:
    device = api.select_device(args.device)
    torch.manual_seed(0)
    net = build(name).to(device)
    lq, gt = (t.to(device) for t in demo_batch(args.batch, args.gt_size))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        memory_before_mb = torch.cuda.memory_allocated() / 2**20
    timings, nfe_forward, nfe_backward = [], [], []
    for step in range(args.warmup + args.iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(net(lq), gt).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            timings.append(time.perf_counter() - start)
            nfe_forward.append(getattr(net, "nfe_forward", 0))
            nfe_backward.append(getattr(net, "nfe_backward", 0))
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20 - memory_before_mb
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before_mb
    return {
        "name": name,
        "device": str(device),
        "params": sum(p.numel() for p in net.parameters()),
        "s_per_iter": sorted(timings)[len(timings) // 2],
        "peak_mb": peak_mb,
        "nfe_forward": float(np.mean(nfe_forward)),
        "nfe_backward": float(np.mean(nfe_backward)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--gt-size", type=int, default=48, help="HR crop side (LR = 1/4)")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args)))
        return

    api.demo_dataset(4)  # prepare the cache once, before the children race for it
    results = {}
    passthrough = [
        f"--batch={args.batch}",
        f"--gt-size={args.gt_size}",
        f"--iters={args.iters}",
        f"--warmup={args.warmup}",
        f"--device={args.device}",
    ]
    for name in ([BASELINE] if BASELINE not in args.configs else []) + args.configs:
        output = subprocess.run(
            [sys.executable, __file__, f"--child={name}", *passthrough], check=True, capture_output=True, text=True
        ).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
        print(f"measured {name}", file=sys.stderr, flush=True)
    base = results[BASELINE]
    print(
        f"Device: {base['device']}; batch {args.batch} x {args.gt_size}^2 HR demo crops; median of {args.iters}; "
        f"peak = {'CUDA max allocated' if 'cuda' in base['device'] else 'max RSS growth'} during training"
    )
    print("| config | params | NFE fwd | NFE bwd | s/iter | x baseline time | peak MiB | x baseline memory |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in results.items():
        print(
            f"| {name} | {row['params']:,} | {row['nfe_forward']:.0f} | {row['nfe_backward']:.0f} "
            f"| {row['s_per_iter']:.3f} | {row['s_per_iter'] / base['s_per_iter']:.2f} | {row['peak_mb']:.0f} "
            f"| {row['peak_mb'] / max(base['peak_mb'], 1e-9):.2f} |"
        )


if __name__ == "__main__":
    main()
