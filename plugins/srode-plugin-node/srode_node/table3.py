"""The paper's Table 3: parameters and time per training iteration of RRDB (1/2/5/10/20 blocks) and the
7-conv augmented time-dependent ODE net, measured back to back in one process on one device."""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class Table3Row:
    """One network: trainable parameters and seconds per training iteration (forward, L1, backward, Adam)."""

    network: str
    params: int
    s_per_iter: float
    nfe_per_iter: float | None


def _time_training(net: nn.Module, lq: torch.Tensor, gt: torch.Tensor, iterations: int) -> tuple[float, float]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    nfe_total = 0
    elapsed = 0.0
    for index in range(iterations + 1):  # the first iteration warms up allocators and is not timed
        if lq.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = (net(lq) - gt).abs().mean()
        loss.backward()
        optimizer.step()
        if lq.device.type == "cuda":
            torch.cuda.synchronize()
        if index:
            elapsed += time.perf_counter() - started
            nfe_total += getattr(net, "nfe_forward", 0) + getattr(net, "nfe_backward", 0)
    return elapsed / iterations, nfe_total / iterations


def measure_table3(blocks: list[int], *, iterations: int = 3, batch: int = 2, lq_size: int = 24,
                   device: torch.device | None = None, ode_solver: str = "dopri5", ode_tol: float = 1e-3,
                   seed: int = 0) -> list[Table3Row]:
    """Measure every RRDB depth in `blocks`, then the 569,251-parameter ODE net, on random x4 data.

    Args:
        blocks: RRDB depths, e.g. [1, 2, 5, 10, 20].
        iterations: timed iterations per network (after one warm-up iteration).
        batch, lq_size: random LR input `(batch, 3, lq_size, lq_size)`; HR target is 4x larger.
        device: where to run (default: CUDA when present, else CPU).
        ode_solver, ode_tol: solver and rtol = atol of the ODE net (discrete backprop).
        seed: seed of the random weights and data (no pretrained weights are used).
    """
    from tqdm import tqdm

    from srode_node.archs import NODESRNet, count_parameters
    from srode_plugins import api

    device = device or api.select_device("auto")
    rrdb_class = api.get_component("archs", "RRDBNet")
    torch.manual_seed(seed)
    lq = torch.rand(batch, 3, lq_size, lq_size, device=device)
    gt = torch.rand(batch, 3, 4 * lq_size, 4 * lq_size, device=device)
    builders: list[tuple[str, object]] = [
        (f"RRDB-{count}", lambda count=count: rrdb_class(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=count,
                                                         num_grow_ch=32, scale=4))
        for count in blocks
    ]
    builders.append(("ODE net (7 conv, augmented, time-dep.)",
                     lambda: NODESRNet(num_feat=64, ode_layers=7, time_dependent=True, augment_channels=16,
                                       solver=ode_solver, rtol=ode_tol, atol=ode_tol)))
    rows = []
    for name, build in tqdm(builders, desc="table3", unit="net"):
        net = build().to(device)
        seconds, nfe = _time_training(net, lq, gt, iterations)
        rows.append(Table3Row(name, count_parameters(net), seconds, nfe if isinstance(net, NODESRNet) else None))
        del net
    return rows


def format_table3(rows: list[Table3Row], device: str) -> str:
    """Markdown table with time relative to the first row (the shallowest RRDB)."""
    baseline = rows[0].s_per_iter
    lines = [f"Device: {device}", "", "| Network | Params | s/iter | x first row | NFE/iter |", "|---|---|---|---|---|"]
    for row in rows:
        nfe = "-" if row.nfe_per_iter is None else f"{row.nfe_per_iter:.0f}"
        lines.append(f"| {row.network} | {row.params:,} | {row.s_per_iter:.3f} | {row.s_per_iter / baseline:.2f} "
                     f"| {nfe} |")
    return "\n".join(lines) + "\n"


def write_table3(rows: list[Table3Row], out_dir: Path, device: str) -> tuple[Path, Path]:
    """Write `table3.md` and `table3.csv`; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path = out_dir / "table3.md"
    markdown_path.write_text(format_table3(rows, device))
    csv_path = out_dir / "table3.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(Table3Row.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return markdown_path, csv_path
