"""Neural-ODE SR fast path: fixed-step classic RK4 with bf16 autocast + channels_last (+ torch.compile) versus
eager fp32 torchdiffeq, on demo batches. Prints time/iteration ratios against `torchdiffeq-rk4-fp32` measured
in the same invocation, and the PSNR of every path on demo validation crops: the same weights (an fp32 net
trained for --train-iters on demo crops until it clearly beats bicubic) evaluated through each path, against
HR and against the baseline path's own output (how far the fast path's arithmetic moves the result).
The default batch is the paper's BSD training batch (16 HR crops of 128^2, x4; the Table-1 augmented
time-dependent net, 64 + 16 channels, 2 convolutions); smaller batches are dominated by per-operator overhead.

    python benchmarks/node_fast_path.py --batch 16 --gt-size 128 --iters 3 --train-iters 300
"""

from __future__ import annotations

import argparse
import copy
import time
from contextlib import nullcontext

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

import srode_plugins.api as api

# srode_plugins.api patches basicsr, so it is imported first
# isort: split
from basicsr.metrics import calculate_psnr
from basicsr.utils import tensor2img
from node_backprop import demo_batch  # beside this script, which is run as `python benchmarks/node_fast_path.py`

NET = {"num_feat": 64, "ode_layers": 2, "time_dependent": True, "augment_channels": 16}
RK4_STEPS = {"step_size": 0.2}
PATHS: dict[str, dict] = {
    "torchdiffeq-rk4-fp32": {"ode": {"solver": "rk4", **RK4_STEPS}},
    "torchdiffeq-dopri5-fp32": {"ode": {"solver": "dopri5", "rtol": 1e-3, "atol": 1e-3}},
    "fixed_rk4-fp32": {"ode": {"solver": "fixed_rk4", **RK4_STEPS}},
    "fixed_rk4-fp32-channels_last": {"ode": {"solver": "fixed_rk4", **RK4_STEPS}, "channels_last": True},
    "fixed_rk4-bf16-channels_last": {"ode": {"solver": "fixed_rk4", **RK4_STEPS}, "channels_last": True, "bf16": True},
    "anode-bf16-channels_last": {
        "ode": {"solver": "fixed_rk4", "backprop": "anode", **RK4_STEPS},
        "channels_last": True,
        "bf16": True,
    },
    "fixed_rk4-bf16-channels_last-compile": {
        "ode": {"solver": "fixed_rk4", **RK4_STEPS},
        "channels_last": True,
        "bf16": True,
        "compile": True,
    },
    "fixed_rk4-bf16-channels_last-cudagraphs": {
        "ode": {"solver": "fixed_rk4", **RK4_STEPS},
        "channels_last": True,
        "bf16": True,
        "compile": True,
        "compile_mode": "reduce-overhead",
    },
}
BASELINE = "torchdiffeq-rk4-fp32"


def build(path: dict, state_dict: dict, device: torch.device) -> torch.nn.Module:
    net = api.get_component("archs", "NODESRNet")(**NET, **path["ode"]).to(device)
    net.load_state_dict(state_dict)
    if path.get("channels_last"):
        net = net.to(memory_format=torch.channels_last)
    if path.get("compile"):
        return torch.compile(net, mode=path.get("compile_mode"))
    return net


def autocast(path: dict, device: torch.device) -> object:
    return torch.autocast(device.type, dtype=torch.bfloat16) if path.get("bf16") else nullcontext()


def prepare_input(path: dict, tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous(memory_format=torch.channels_last) if path.get("channels_last") else tensor


def seconds_per_iteration(
    net: torch.nn.Module, path: dict, lq: torch.Tensor, gt: torch.Tensor, iters: int, warmup: int
) -> float:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    lq = prepare_input(path, lq)
    timings = []
    for step in range(warmup + iters):
        if lq.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(path, lq.device):
            loss = torch.nn.functional.l1_loss(net(lq).float(), gt)
        loss.backward()
        optimizer.step()
        if lq.is_cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            timings.append(time.perf_counter() - start)
    return sorted(timings)[len(timings) // 2]


def train_reference(device: torch.device, iters: int, batch: int, gt_size: int) -> dict:
    """Train the fp32 fixed-step net on demo crops so that it beats bicubic and PSNR differences mean something."""
    torch.manual_seed(0)
    net = api.get_component("archs", "NODESRNet")(**NET, solver="fixed_rk4", **RK4_STEPS).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for step in tqdm(range(iters), desc="training the reference net", leave=False):
        lq, gt = (t.to(device) for t in demo_batch(batch, gt_size, seed=100 + step))
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(net(lq), gt).backward()
        optimizer.step()
    return copy.deepcopy(net.state_dict())


def validation_crops(lq_size: int) -> list[tuple[torch.Tensor, np.ndarray]]:
    """Centre crops of the demo validation photos: LR tensor (1, 3, s, s) and HR uint8 image (4s, 4s, 3) BGR."""
    paths = api.demo_dataset(4)
    crops = []
    for hr_path in sorted(paths.val_hr.iterdir()):
        lr = np.asarray(Image.open(paths.val_lr / hr_path.name).convert("RGB"))
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        top, left = (lr.shape[0] - lq_size) // 2, (lr.shape[1] - lq_size) // 2
        lr = lr[top : top + lq_size, left : left + lq_size]
        hr = hr[4 * top : 4 * (top + lq_size), 4 * left : 4 * (left + lq_size)]
        tensor = torch.from_numpy(lr.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
        crops.append((tensor, hr[..., ::-1].copy()))
    return crops


def evaluate(net: torch.nn.Module, path: dict, crops: list, device: torch.device,
             reference: list[torch.Tensor] | None = None) -> tuple[float, float, list[torch.Tensor]]:
    """Mean Y PSNR vs HR, mean RGB PSNR vs `reference` outputs (inf without one), and the outputs themselves."""
    vs_hr, vs_ref, outputs = [], [], []
    with torch.no_grad():
        for index, (lq, hr) in enumerate(crops):
            with autocast(path, device):
                out = net(prepare_input(path, lq.to(device))).float().clamp(0, 1).cpu()
            outputs.append(out)
            vs_hr.append(calculate_psnr(tensor2img(out), hr, crop_border=4, test_y_channel=True))
            if reference is not None:
                mse = float(torch.mean((out - reference[index]) ** 2))
                vs_ref.append(10 * np.log10(1.0 / mse) if mse > 0 else float("inf"))
    return float(np.mean(vs_hr)), float(np.mean(vs_ref)) if vs_ref else float("inf"), outputs


def bicubic_psnr(crops: list) -> float:
    values = []
    for lq, hr in crops:
        up = torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic", align_corners=False)
        values.append(calculate_psnr(tensor2img(up.clamp(0, 1)), hr, crop_border=4, test_y_channel=True))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--gt-size", type=int, default=128, help="HR crop side (LR = 1/4)")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations (compile happens here)")
    parser.add_argument("--train-iters", type=int, default=300, help="fp32 training iterations before the PSNR check")
    parser.add_argument("--train-batch", type=int, default=8, help="batch of the reference training")
    parser.add_argument("--train-gt-size", type=int, default=64, help="HR crop side of the reference training")
    parser.add_argument("--val-lq-size", type=int, default=48, help="LR centre-crop side of the validation photos")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    args = parser.parse_args()

    device = api.select_device(args.device)
    state_dict = train_reference(device, args.train_iters, args.train_batch, args.train_gt_size)
    lq, gt = (t.to(device) for t in demo_batch(args.batch, args.gt_size))
    crops = validation_crops(args.val_lq_size)
    results: dict[str, tuple[float, float, float] | str] = {}
    reference = None
    for name in ([BASELINE] if BASELINE not in args.paths else []) + args.paths:
        path = PATHS[name]
        try:
            net = build(path, state_dict, device)
            seconds = seconds_per_iteration(net, path, lq, gt, args.iters, args.warmup)
            getattr(net, "_orig_mod", net).load_state_dict(state_dict)  # PSNR of the trained weights
            psnr, agreement, outputs = evaluate(net.eval(), path, crops, device, reference)
            reference = reference or outputs  # the baseline runs first
            results[name] = (seconds, psnr, agreement)
        except Exception as error:  # a path that cannot run here (e.g. compile without a C++ compiler) is reported
            results[name] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        print(f"measured {name}", flush=True)
    base_seconds, base_psnr, _ = results[BASELINE]
    print(
        f"\nDevice: {device} (threads: {torch.get_num_threads()}); batch {args.batch} x {args.gt_size}^2 HR demo "
        f"crops; median of {args.iters}; PSNR: Y, border 4, {len(crops)} demo val crops of "
        f"{4 * args.val_lq_size}^2 after {args.train_iters} fp32 training iterations "
        f"(batch {args.train_batch} x {args.train_gt_size}^2); bicubic: {bicubic_psnr(crops):.3f} dB"
    )
    print("| path | s/iter | speed-up vs baseline | PSNR vs HR (dB) | dPSNR vs baseline | PSNR vs baseline output |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        if isinstance(result, str):
            print(f"| {name} | - | - | - | - | {result} |")
            continue
        seconds, psnr, agreement = result
        print(f"| {name} | {seconds:.4f} | {base_seconds / seconds:.2f} | {psnr:.3f} | {psnr - base_psnr:+.3f} "
              f"| {'(reference)' if name == BASELINE else f'{agreement:.1f} dB'} |")

if __name__ == "__main__":
    main()
