"""Training throughput of one EDSR-baseline option: stock `basicsr.train` vs `basicsr train` in fp32, bf16,
bf16 + channels_last and `amp: auto` + `channels_last: auto`, on this CPU and under an AVX2-only emulation.

Every run trains the same option file (same seed, data, iterations) in its own process, end to end including
data loading and the final validation; per capability class the script prints seconds/iteration, the ratio
against stock BasicSR run in the same invocation, the validation PSNR, what `auto` resolved to, and whether
`auto` is within 5% of the best explicit choice. Then a bare training step (no data loading) per precision.

    .venv/bin/python benchmarks/core_amp_throughput.py [--iters 8] [--repeat 1] [--threads 2]
        [--classes native avx2] [--variants stock fp32 fp32_cl bf16 bf16_cl auto]
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
from srode_plugins import compat

compat.apply()  # only makes `import basicsr` work on current torchvision; no engine change
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


AVX2_EMULATION = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
CLASSES = {"native": {}, "avx2": AVX2_EMULATION}
VARIANTS = [  # (label, run name, engine options); the first is the baseline of every ratio
    ("stock basicsr.train (fp32 eager)", "stock", {}),
    ("basicsr train, fp32", "fp32", {}),
    ("basicsr train, fp32 + channels_last", "fp32_cl", {"channels_last": True}),
    ("basicsr train, amp: bf16", "bf16", {"amp": "bf16"}),
    ("basicsr train, amp: bf16 + channels_last", "bf16_cl", {"amp": "bf16", "channels_last": True}),
    ("basicsr train, amp: auto + channels_last: auto", "auto", {"amp": "auto", "channels_last": "auto"}),
]


def run(cmd: list[str], cwd: Path, threads: int, extra_env: dict[str, str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), **extra_env}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def capability_of(extra_env: dict[str, str]) -> str:
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **extra_env}, capture_output=True,
                          text=True, check=True).stdout.strip()


def resolved_precision(folder: Path) -> str:
    text = "".join(p.read_text() for p in folder.glob("train_*.log"))
    match = re.search(r"Precision: amp (\S+), channels_last (\S+)", text)
    return f"{match.group(1)}{' + channels_last' if match.group(2) == 'true' else ''}" if match else "?"


def loop_seconds(folder: Path) -> float:
    """Training-loop time (data loading included, start-up and final validation excluded) from the log."""
    text = "".join(p.read_text() for p in folder.glob("train_*.log"))
    precise = re.findall(r"End of training after \S+ \(([0-9.]+) s\)", text)  # srode's engine logs 0.01 s
    if precise:
        return float(precise[-1])
    h, m, s = re.findall(r"End of training(?:\. Time consumed:| after) (\d+):(\d+):(\d+)", text)[-1]
    return int(h) * 3600 + int(m) * 60 + int(s)  # stock BasicSR logs whole seconds


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


def measure_class(cls: str, args: argparse.Namespace, paths: object, work: Path) -> None:
    extra_env = CLASSES[cls]
    variants = [v for v in VARIANTS if v[1] in args.variants]
    measured: dict[str, list[tuple[float, float, float]]] = {name: [] for _, name, _ in variants}
    auto_pick = "?"
    for repeat in range(args.repeat):  # interleaved, so a slow spell of the machine hits every variant alike
        shift = repeat % len(variants)  # and rotated, so no variant always runs first or last
        for _, name, engine_opts in variants[shift:] + variants[:shift]:
            run_name = f"{cls}_{name}_{repeat}"
            option = work / f"{run_name}.yml"
            option.write_text(yaml.safe_dump(edsr_option(run_name, args.iters, paths, engine_opts)))
            cmd = ([sys.executable, "-c", STOCK, str(option)] if name == "stock"
                   else [sys.executable, "-m", "srode_plugins", "train", "-opt", str(option)])
            process_s = run(cmd, work, args.threads, extra_env)
            folder = work / "experiments" / run_name
            measured[name].append((loop_seconds(folder), process_s, last_psnr(folder)))
            if name == "auto":
                auto_pick = resolved_precision(folder)
            print(f"[{cls}] repeat {repeat + 1}/{args.repeat} {name}: loop {measured[name][-1][0]:.0f} s", flush=True)
    rows = [(label, name, *(statistics.median(column) for column in zip(*measured[name], strict=True)))
            for label, name, _ in variants]
    env_text = " ".join(f"{k}={v}" for k, v in extra_env.items()) or "no emulation"
    print(f"\n[{cls}] CPU capability {capability_of(extra_env)} ({env_text}); EDSR-baseline x2 (16 blocks, 64 feat), "
          f"batch 16 x 48px LR patches, {args.iters} iterations, {args.threads} threads, 1 loader worker; "
          f"median of {args.repeat} interleaved runs; auto resolved to: {auto_pick}")
    print("| run | loop s/iter | loop vs stock | process s/iter | process vs stock | val PSNR (Y, dB) |")
    print("|---|---|---|---|---|---|")
    _, _, stock_loop, stock_s, stock_psnr = rows[0]
    for label, _, loop_s, process_s, psnr in rows:
        print(f"| {label} | {loop_s / args.iters:.3f} | {stock_loop / loop_s:.2f}x | {process_s / args.iters:.3f} "
              f"| {stock_s / process_s:.2f}x | {psnr:.3f} ({psnr - stock_psnr:+.3f}) |")
    loops = {name: loop_s for _, name, loop_s, _, _ in rows}
    explicit = {k: v for k, v in loops.items() if k in ("fp32", "fp32_cl", "bf16", "bf16_cl")}
    if "auto" in loops and explicit:
        best = min(explicit, key=explicit.get)
        print(f"[{cls}] auto vs best explicit ({best}): {explicit[best] / loops['auto']:.2f}x "
              f"(target >= 0.95x); auto vs fp32: "
              f"{loops.get('fp32', float('nan')) / loops['auto']:.2f}x")
    bare = subprocess.run([sys.executable, __file__, "--bare-step", "--threads", str(args.threads),
                           "--step-repeats", str(args.step_repeats)], env={**os.environ, **extra_env},
                          capture_output=True, text=True, check=True).stdout
    print(bare)


def bare_step_table(args: argparse.Namespace) -> None:
    import torch

    from srode_plugins import compat

    compat.apply()  # import basicsr on current torchvision

    torch.set_num_threads(args.threads)
    fp32 = step_seconds(amp=False, channels_last=False, repeats=args.step_repeats)
    fp32_cl = step_seconds(amp=False, channels_last=True, repeats=args.step_repeats)
    bf16 = step_seconds(amp=True, channels_last=False, repeats=args.step_repeats)
    bf16_cl = step_seconds(amp=True, channels_last=True, repeats=args.step_repeats)
    print(f"Bare training step ({torch.backends.cpu.get_cpu_capability()}), same network and batch, random tensors, "
          f"median of {args.step_repeats}:")
    print("| step | s/step | vs fp32 |")
    print("|---|---|---|")
    for label, seconds in (("fp32, NCHW", fp32), ("fp32, channels_last", fp32_cl), ("bf16 autocast, NCHW", bf16),
                           ("bf16 autocast + channels_last", bf16_cl)):
        print(f"| {label} | {seconds:.3f} | {fp32 / seconds:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of every variant (median reported)")
    parser.add_argument("--step-repeats", type=int, default=4, help="bare training steps timed per variant")
    parser.add_argument("--classes", nargs="+", choices=list(CLASSES), default=list(CLASSES),
                        help="native: this CPU as it is; avx2: emulate an AVX2-only CPU (ONEDNN_MAX_CPU_ISA, "
                             "ATEN_CPU_CAPABILITY)")
    parser.add_argument("--variants", nargs="+", choices=[v[1] for v in VARIANTS], default=[v[1] for v in VARIANTS])
    parser.add_argument("--bare-step", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_step:
        bare_step_table(args)
        return
    if args.variants[0] != "stock":
        args.variants = ["stock", *[v for v in args.variants if v != "stock"]]

    from srode_plugins.data.demo import demo_dataset

    paths = demo_dataset(2)
    work = Path(tempfile.mkdtemp(prefix="srode_bench_"))
    for cls in args.classes:
        measure_class(cls, args, paths, work)
    print("loop: the training loop incl. data loading (from each run's log); process: the whole command incl. "
          "start-up and the final fp32 validation")


if __name__ == "__main__":
    main()
