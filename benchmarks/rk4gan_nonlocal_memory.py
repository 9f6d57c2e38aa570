"""Non-local attention at inference: memory-efficient (SDPA) vs naive softmax, peak memory and time as ratios.

Each case runs one forward pass of a small dual-attention RK4DualAttnRDN (x4) in a fresh process, so the
peak resident set (CPU) or the peak CUDA allocation covers that case alone. Global attention is compared at
an LR size where the naive (HW x HW) matrix still fits (--global-size); the windowed mode at 512x512 LR.
A channel-attention-only network (no non-local) gives the floor every case shares (weights, features, output).
Time is the process's CPU time on a CPU (steadier than wall time on a shared machine), wall time on CUDA.

    python benchmarks/rk4gan_nonlocal_memory.py                       # CPU
    python benchmarks/rk4gan_nonlocal_memory.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from tqdm import tqdm

NET = {"upscale": 4, "num_feat": 16, "num_block": 2, "num_layer": 2, "growth_rate": 8, "integrator": "rk4"}
MIB = 1024**2

CHILD = """
import json, resource, sys, time, torch
from srode_rk4gan.generator_arch import RK4DualAttnRDN
case = json.loads(sys.argv[1])
torch.set_num_threads(case.pop("threads"))
device = torch.device(case.pop("device"))
size = case.pop("size")
torch.manual_seed(0)
net = RK4DualAttnRDN(**case).to(device).eval()
x = torch.rand(1, 3, size, size, device=device)
clock = time.perf_counter if device.type == "cuda" else time.process_time
with torch.inference_mode():
    start = clock()
    out = net(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = clock() - start
peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps({"seconds": seconds, "peak_bytes": peak, "finite": bool(torch.isfinite(out).all())}))
"""


def run_case(size: int, attention: str, impl: str, window: int | None, device: str, threads: int) -> dict:
    case = {
        **NET,
        "attention": attention,
        "nonlocal_impl": impl,
        "nonlocal_window": window,
        "size": size,
        "device": device,
        "threads": threads,
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--global-size", type=int, default=96, help="LR side for global attention (naive must fit)")
    parser.add_argument("--window-size", type=int, default=512, help="LR side for the windowed mode")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="1 keeps CPU time free of thread spin-waits")
    args = parser.parse_args()
    cases = [
        (args.global_size, "channel", "sdpa", None),
        (args.global_size, "dual", "sdpa", None),
        (args.global_size, "dual", "naive", None),
        (args.window_size, "channel", "sdpa", args.window),
        (args.window_size, "dual", "sdpa", args.window),
        (args.window_size, "dual", "naive", args.window),
    ]
    results = {}
    for case in tqdm(cases, desc="cases", unit="process"):
        results[case] = run_case(*case, device=args.device, threads=args.threads)
    memory = "peak CUDA allocation" if args.device.startswith("cuda") else "peak RSS"
    clock = "wall s" if args.device.startswith("cuda") else "process CPU s"
    print(f"\n{args.device}, {args.threads} thread(s), {clock}; one x4 forward pass of RK4DualAttnRDN {NET}\n")
    print(
        f"| LR size | non-local | impl | {memory} (MiB) | above floor (MiB) | time (s) | memory vs sdpa "
        "| time vs sdpa |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for size, attention, impl, window in cases:
        result = results[(size, attention, impl, window)]
        floor = attention == "channel"
        mode = "none (floor)" if floor else ("global" if window is None else f"window {window}")
        label = "-" if floor else impl
        if "error" in result:
            print(f"| {size}x{size} | {mode} | {label} | failed: {result['error'][:60]} | | | | |")
            continue
        above = result["peak_bytes"] - results[(size, "channel", "sdpa", window)].get("peak_bytes", 0)
        reference = results[(size, attention, "sdpa", window)]
        ratios = ("", "")
        if not floor and "peak_bytes" in reference:
            ratios = (
                f"{result['peak_bytes'] / reference['peak_bytes']:.2f}x",
                f"{result['seconds'] / reference['seconds']:.2f}x",
            )
        print(
            f"| {size}x{size} | {mode} | {label} | {result['peak_bytes'] / MIB:.0f} | "
            f"{'' if floor else f'{above / MIB:.0f}'} | {result['seconds']:.2f} | {ratios[0]} | {ratios[1]} |"
        )
    tokens = args.window_size**2
    print(
        f"\nA global naive matrix at {args.window_size}x{args.window_size} LR would hold {tokens}^2 float32 = "
        f"{tokens**2 * 4 / 1024**3:.0f} GiB per attention call."
    )


if __name__ == "__main__":
    main()
