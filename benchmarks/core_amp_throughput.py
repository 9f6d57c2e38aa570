"""Training throughput of one EDSR-baseline option: stock `basicsr.train` vs `basicsr train` + bf16 + channels_last.

Both runs train the same option file (same seed, data, iterations) back to back in separate processes, end to
end including data loading and the final validation; the script prints seconds/iteration, the speed-up ratio
and the validation PSNR of both (the target: >= 2.5x, PSNR within 0.1 dB).

    .venv/bin/python benchmarks/core_amp_throughput.py [--iters 60] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

STOCK = """
import os
import sys
import srode_plugins.compat  # only makes `import basicsr` work on current torchvision; no engine change
from basicsr.train import train_pipeline
sys.argv = ["basicsr.train", "-opt", sys.argv[1]]
train_pipeline(os.getcwd())
"""


def edsr_option(name: str, iters: int, paths: object, engine_opts: dict) -> dict:
    return {
        "name": name,
        "model_type": "SRModel",
        "scale": 2,
        "num_gpu": 0,
        "manual_seed": 0,
        "datasets": {
            "train": {
                "name": "demo_train",
                "type": "PairedImageDataset",
                "dataroot_gt": str(paths.train_hr),
                "dataroot_lq": str(paths.train_lr),
                "filename_tmpl": "{}",
                "io_backend": {"type": "disk"},
                "gt_size": 96,
                "use_hflip": True,
                "use_rot": True,
                "num_worker_per_gpu": 1,
                "batch_size_per_gpu": 16,
                "dataset_enlarge_ratio": 100,
            },
            "val": {
                "name": "demo_val",
                "type": "PairedImageDataset",
                "dataroot_gt": str(paths.val_hr),
                "dataroot_lq": str(paths.val_lr),
                "filename_tmpl": "{}",
                "io_backend": {"type": "disk"},
            },
        },
        "network_g": {
            "type": "EDSR",
            "num_in_ch": 3,
            "num_out_ch": 3,
            "num_feat": 64,
            "num_block": 16,
            "upscale": 2,
            "res_scale": 1,
            "img_range": 255.0,
            "rgb_mean": [0.4488, 0.4371, 0.4040],
        },
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {
            "ema_decay": 0,
            "optim_g": {"type": "Adam", "lr": 1e-4, "betas": [0.9, 0.99]},
            "scheduler": {"type": "MultiStepLR", "milestones": [10**6], "gamma": 0.5},
            "total_iter": iters,
            "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
            **engine_opts,
        },
        "val": {
            "val_freq": iters,
            "save_img": False,
            "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 2, "test_y_channel": True}},
        },
        "logger": {"print_freq": 10**6, "save_checkpoint_freq": 10**6, "use_tb_logger": False},
    }


def run(cmd: list[str], cwd: Path, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def loop_seconds(folder: Path) -> float:
    """Training-loop time (data loading included, start-up and final validation excluded) from the log."""
    text = "".join(p.read_text() for p in folder.glob("train_*.log"))
    h, m, s = re.findall(r"End of training(?:\. Time consumed:| after) (\d+):(\d+):(\d+)", text)[-1]
    return int(h) * 3600 + int(m) * 60 + int(s)


def last_psnr(folder: Path) -> float:
    text = "".join(p.read_text() for p in folder.glob("train_*.log"))
    return float(re.findall(r"# psnr: ([0-9.]+)", text)[-1])


def step_seconds(amp: bool, channels_last: bool, repeats: int) -> float:
    """Median time of one bare training step (forward, L1, backward, Adam) of the benchmark's network and batch
    on random tensors: no data loading, no engine. The ratio of these is the ceiling of the end-to-end ratio."""
    import torch
    from basicsr.archs.edsr_arch import EDSR

    torch.manual_seed(0)
    net = EDSR(3, 3, num_feat=64, num_block=16, upscale=2, res_scale=1, img_range=255.0,
               rgb_mean=(0.4488, 0.4371, 0.4040))
    lq, gt = torch.rand(16, 3, 48, 48), torch.rand(16, 3, 96, 96)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        lq = lq.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    timings = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.l1_loss(net(lq).float(), gt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - start)
    return sorted(timings[1:])[repeats // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of every variant (median reported)")
    parser.add_argument("--step-repeats", type=int, default=6, help="bare training steps timed per variant")
    args = parser.parse_args()

    from srode_plugins.data.demo import demo_dataset

    paths = demo_dataset(2)
    work = Path(tempfile.mkdtemp(prefix="srode_bench_"))
    variants = [
        ("stock basicsr.train (fp32 eager)", "stock", {}),
        ("basicsr train, amp: bf16 + channels_last", "srode", {"amp": "bf16", "channels_last": True}),
        ("basicsr train, amp: bf16 + channels_last, decode_cache_mb: 0", "srode_nocache",
         {"amp": "bf16", "channels_last": True, "decode_cache_mb": 0}),
    ]
    measured: dict[str, list[tuple[float, float, float]]] = {name: [] for _, name, _ in variants}
    for repeat in range(args.repeat):  # interleaved, so a slow spell of the machine hits every variant alike
        for _, name, engine_opts in variants:
            run_name = f"{name}_{repeat}"
            option = work / f"{run_name}.yml"
            option.write_text(yaml.safe_dump(edsr_option(run_name, args.iters, paths, engine_opts)))
            cmd = ([sys.executable, "-c", STOCK, str(option)] if name == "stock"
                   else [sys.executable, "-m", "srode_plugins", "train", "-opt", str(option)])
            process_s = run(cmd, work, args.threads)
            folder = work / "experiments" / run_name
            measured[name].append((loop_seconds(folder), process_s, last_psnr(folder)))
            print(f"repeat {repeat + 1}/{args.repeat} {name}: loop {measured[name][-1][0]:.0f} s", flush=True)
    rows = [(label, *(statistics.median(column) for column in zip(*measured[name], strict=True)))
            for label, name, _ in variants]
    print(f"\nEDSR-baseline x2 (16 blocks, 64 feat), batch 16 x 48px LR patches, {args.iters} iterations, "
          f"{args.threads} threads, 1 loader worker; median of {args.repeat} interleaved runs")
    print("| run | loop s/iter | loop speed-up | process s/iter | process speed-up | val PSNR (Y, dB) |")
    print("|---|---|---|---|---|---|")
    _, stock_loop, stock_s, stock_psnr = rows[0]
    for label, loop_s, process_s, psnr in rows:
        print(f"| {label} | {loop_s / args.iters:.3f} | {stock_loop / loop_s:.2f}x | {process_s / args.iters:.3f} "
              f"| {stock_s / process_s:.2f}x | {psnr:.3f} ({psnr - stock_psnr:+.3f}) |")
    per_run = ", ".join(f"{stock[0] / ours[0]:.2f}x" for stock, ours in zip(measured["stock"], measured["srode"],
                                                                           strict=True))
    print(f"loop speed-up of each repeat (stock / bf16 + channels_last): {per_run}")
    print("loop: the training loop incl. data loading (from each run's log); process: the whole command incl. "
          "start-up and the final fp32 validation")

    import torch

    import srode_plugins.compat  # noqa: F401  (import basicsr on current torchvision)

    torch.set_num_threads(args.threads)
    fp32 = step_seconds(amp=False, channels_last=False, repeats=args.step_repeats)
    bf16 = step_seconds(amp=True, channels_last=True, repeats=args.step_repeats)
    print(f"\nBare training step, same network and batch, random tensors, median of {args.step_repeats}:")
    print("| step | s/step | speed-up |")
    print("|---|---|---|")
    print(f"| fp32 eager, NCHW | {fp32:.3f} | 1.00x |")
    print(f"| bf16 autocast + channels_last | {bf16:.3f} | {fp32 / bf16:.2f}x |")

if __name__ == "__main__":
    main()
