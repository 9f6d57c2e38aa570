"""Train a list of option files one after the other and write one result table (the paper's Table 1 layout)."""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from srode_node.nfe_records import TRAIN_NFE_CSV, read_nfe_trace

TABLE_COLUMNS = ("model", "backprop", "params", "psnr", "ssim", "nfe_forward", "nfe_backward", "skipped_batches",
                 "s_per_iter", "status", "option_file")


@dataclass
class SweepRow:
    """One trained configuration. NFE values are means over the logged training iterations (None: not an ODE)."""

    model: str
    backprop: str
    params: int | None
    psnr: float | None
    ssim: float | None
    nfe_forward: float | None
    nfe_backward: float | None
    skipped_batches: int
    s_per_iter: float | None
    status: str
    option_file: str


def describe_network(network_opt: dict[str, Any]) -> tuple[str, str]:
    """A Table-1 style model label and backprop label from a `network_g` mapping."""
    arch = network_opt.get("type", "?")
    if arch == "RRDBNet":
        return f"RRDB ({network_opt.get('num_block', '?')} blocks)", "-"
    if arch != "NODESRNet":
        return str(arch), "-"
    backprop = str(network_opt.get("backprop", "discrete"))
    if backprop == "anode":
        return "ANODE", "checkpointed"
    dynamics = "time-dep." if network_opt.get("time_dependent") else "aut."
    family = "Augmented NODE" if network_opt.get("augment_channels") else "NODE"
    return f"{family} ({dynamics})", backprop


def run_sweep(option_files: list[str], *, overrides: list[str] | None = None, demo: bool = False,
              root: Path | None = None) -> list[SweepRow]:
    """Train every option file (training errors become a row's status, the sweep goes on)."""
    from tqdm import tqdm

    from srode_plugins.api import SrodeError, load_options, train

    rows = []
    for option_file in tqdm(option_files, desc="sweep", unit="config"):
        network_opt = load_options(option_file, overrides).opt.get("network_g", {})
        model_label, backprop = describe_network(network_opt)
        started = time.perf_counter()
        try:
            summary = train(option_file, overrides=overrides, demo=demo, root=root)
        except SrodeError as error:
            rows.append(SweepRow(model_label, backprop, None, None, None, None, None, 0, None,
                                 f"aborted: {error}", option_file))
            continue
        elapsed = time.perf_counter() - started
        rows.append(_row_from_summary(summary, model_label, backprop, elapsed, option_file))
    return rows


def _row_from_summary(summary: Any, model_label: str, backprop: str, elapsed: float,
                      option_file: str) -> SweepRow:
    model = summary.model
    net = model.get_bare_model(model.net_g)
    metrics = summary.metrics
    nfe_forward = nfe_backward = None
    run_dir = Path(summary.experiments_root)
    if (run_dir / TRAIN_NFE_CSV).is_file():
        trace = read_nfe_trace(run_dir)
        nfe_forward, nfe_backward = float(trace.nfe_forward.mean()), float(trace.nfe_backward.mean())
    return SweepRow(
        model=model_label,
        backprop=backprop,
        params=sum(p.numel() for p in net.parameters()),
        psnr=_metric(metrics, "psnr"),
        ssim=_metric(metrics, "ssim"),
        nfe_forward=nfe_forward,
        nfe_backward=nfe_backward,
        skipped_batches=int(getattr(model, "skipped_batches", 0)),
        s_per_iter=elapsed / max(int(summary.iter), 1),
        status="ok",
        option_file=option_file,
    )


def _metric(metrics: dict[str, float], name: str) -> float | None:
    return float(metrics[name]) if name in metrics else None


def _cell(value: object, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_markdown(rows: list[SweepRow]) -> str:
    """Markdown table: one row per configuration, columns as `TABLE_COLUMNS` (option file last)."""
    header = ["Model", "Backprop", "Params", "PSNR (dB)", "SSIM", "NFE fwd", "NFE bwd", "Skipped", "s/iter",
              "Status", "Option file"]
    digits = {"psnr": 2, "ssim": 4, "nfe_forward": 1, "nfe_backward": 1, "s_per_iter": 3}
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = asdict(row)
        cells = [_cell(values[column], digits.get(column, 0)).replace("|", "/") for column in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(rows: list[SweepRow], out_dir: Path, stem: str = "table1") -> tuple[Path, Path]:
    """Write `<stem>.md` and `<stem>.csv` into `out_dir`; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path = out_dir / f"{stem}.md"
    markdown_path.write_text(format_markdown(rows))
    csv_path = out_dir / f"{stem}.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return markdown_path, csv_path
