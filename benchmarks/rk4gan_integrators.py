"""RK4DualAttnRDN: parameters and training time per iteration for every integrator x attention combination.

Parameters are counted for the report-size generator (G0 64, D 20, C 6, G 32, x4). Time per iteration
(forward + backward + Adam step on a batch of LR crops) is measured for --size (small by default, so a CPU run
takes a minute or two) and printed as a ratio to the euler / no-attention baseline measured in the same
invocation. On a CPU it is the process's CPU time (all threads), which a machine shared with other work
disturbs less than wall time; on CUDA it is wall time. Rounds are interleaved, their order rotated, and the
median kept.

    python benchmarks/rk4gan_integrators.py                 # CPU, small generator
    python benchmarks/rk4gan_integrators.py --size report --batch 16 --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
from srode_rk4gan.attention import ATTENTION_MODES
from srode_rk4gan.generator_arch import RK4DualAttnRDN
from srode_rk4gan.integrators import INTEGRATORS
from tqdm import tqdm

SIZES = {
    "report": {"num_feat": 64, "num_block": 20, "num_layer": 6, "growth_rate": 32},
    "small": {"num_feat": 32, "num_block": 4, "num_layer": 4, "growth_rate": 16},
}
COMMON = {"upscale": 4, "nonlocal_kind": "gaussian", "nonlocal_window": 24, "se_reduction": 8}


def parameter_count(integrator: str, attention: str) -> int:
    net = RK4DualAttnRDN(integrator=integrator, attention=attention, **SIZES["report"], **COMMON)
    return sum(p.numel() for p in net.parameters())


def seconds_per_iteration(net: torch.nn.Module, lq: torch.Tensor, gt: torch.Tensor, iters: int) -> float:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(net(lq), gt).backward()
        optimizer.step()

    # On a CPU shared with other work, the process's CPU time is steadier than wall time.
    clock = time.perf_counter if lq.is_cuda else time.process_time
    step()  # warm-up
    if lq.is_cuda:
        torch.cuda.synchronize()
    start = clock()
    for _ in range(iters):
        step()
    if lq.is_cuda:
        torch.cuda.synchronize()
    return (clock() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=22, help="LR crop side (22 = the report's 88-px HR crop, x4)")
    parser.add_argument("--iters", type=int, default=2, help="timed iterations per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    combos = list(itertools.product(INTEGRATORS, ATTENTION_MODES))
    lq = torch.rand(args.batch, 3, args.patch, args.patch, device=device)
    gt = torch.rand(args.batch, 3, 4 * args.patch, 4 * args.patch, device=device)
    nets = {c: RK4DualAttnRDN(integrator=c[0], attention=c[1], **SIZES[args.size], **COMMON).to(device) for c in combos}
    times: dict[tuple[str, str], list[float]] = {c: [] for c in combos}
    with tqdm(total=args.rounds * len(combos), desc="timing", unit="net") as progress:
        for round_index in range(args.rounds):
            # rotate the order each round so no combination always runs first (cold caches, allocator growth)
            shift = round_index * len(combos) // args.rounds
            for combo in combos[shift:] + combos[:shift]:
                times[combo].append(seconds_per_iteration(nets[combo], lq, gt, args.iters))
                progress.update(1)
    median = {c: statistics.median(t) for c, t in times.items()}
    baseline = median[("euler", "none")]
    name = (
        torch.cuda.get_device_name(device) + ", wall s"
        if device.type == "cuda"
        else f"CPU, {args.threads} threads, process CPU s (all threads)"
    )
    print(
        f"\n{name}; time: {args.size} generator {SIZES[args.size]}, batch {args.batch} x {args.patch}^2 LR crops, "
        f"median of {args.rounds} rounds x {args.iters} iterations; params: report-size generator (x4)\n"
    )
    print("| integrator | attention | params (report size) | G evals / block | s / iter | time vs euler+none |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for integrator, attention in combos:
        stages = nets[(integrator, attention)].blocks[0].num_stages
        print(
            f"| {integrator} | {attention} | {parameter_count(integrator, attention) / 1e6:.3f} M | {stages} | "
            f"{median[(integrator, attention)]:.3f} | {median[(integrator, attention)] / baseline:.2f}x |"
        )


if __name__ == "__main__":
    main()
