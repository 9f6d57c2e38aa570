"""The seed report's Table 1 layout for `basicsr resshift sweep`: a rich table, its Markdown copy and a PNG of
quality against rho (one panel per metric, Euler and Heun as lines, the baseline as a dashed level)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.table import Table
from rich.text import Text

from .seed_report import BASELINE, REPORT_TABLE_1, RowResult

__all__ = ["markdown_table", "quality_vs_rho_png", "report_markdown", "rich_table"]

COLUMNS = ("solver", "rho", "LPIPS ↓", "SSIM ↑", "PSNR ↑")


def _cells(result: RowResult) -> tuple[str, str, str, str, str]:
    lpips = "-" if result.lpips is None else f"{result.lpips:.3f}"
    return result.row.solver, result.row.rho_label, lpips, f"{result.ssim:.3f}", f"{result.psnr:.2f}"


def rich_table(results: Sequence[RowResult], caption: str) -> Table:
    """The measured rows in the report's columns: solver | rho | LPIPS | SSIM | PSNR, `caption` below."""
    table = Table(caption=Text(caption), caption_justify="left")
    for index, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if index == 0 else "right")
    for result in results:
        table.add_row(*_cells(result), end_section=result.row.solver == BASELINE)
    return table


def markdown_table(results: Sequence[RowResult]) -> str:
    """The same rows as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(_cells(result)) + " |" for result in results]
    return "\n".join(lines) + "\n"


def report_markdown() -> str:
    """The report's published Table 1 in the same layout, for comparison."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---:|---:|---:|---:|"]
    for (solver, rho), scores in REPORT_TABLE_1.items():
        rho_label = "-" if rho is None else f"{rho:g}"
        lines.append(f"| {solver} | {rho_label} | {scores.lpips:.3f} | {scores.ssim:.3f} | {scores.psnr:.2f} |")
    return "\n".join(lines) + "\n"


def quality_vs_rho_png(results: Sequence[RowResult], path: Path, title: str) -> Path:
    """Write LPIPS / SSIM / PSNR against rho (the report's order 1, 4, 8, -4, -8 as categories) to `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    baseline = next((r for r in results if r.row.solver == BASELINE), None)
    solvers = [s for s in dict.fromkeys(r.row.solver for r in results) if s != BASELINE]
    metrics = [("SSIM ↑", "ssim"), ("PSNR (dB) ↑", "psnr")]
    if all(r.lpips is not None for r in results):
        metrics.insert(0, ("LPIPS ↓", "lpips"))
    figure = Figure(figsize=(4.2 * len(metrics), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=9)
    for axis, (label, attribute) in zip(figure.subplots(1, len(metrics), squeeze=False)[0], metrics):
        for solver in solvers:
            rows = [r for r in results if r.row.solver == solver]
            axis.plot([r.row.rho_label for r in rows], [getattr(r, attribute) for r in rows], marker="o",
                      label=f"{solver} (NFE {rows[0].nfe})")
        if baseline is not None:
            axis.axhline(getattr(baseline, attribute), color="grey", linestyle="--",
                         label=f"Baseline (NFE {baseline.nfe})")
        axis.set_xlabel("rho")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    figure.axes[0].legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
