"""Windowed mean / std of training NFE and the plot of the paper's Fig. 3 (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srode_node.nfe_records import NFETrace


def windowed_mean_std(iterations: np.ndarray, values: np.ndarray, window: int) -> tuple[np.ndarray, ...]:
    """Split the records into consecutive windows of `window` records.

    Returns (centre iteration, mean, std) per window; a trailing partial window is kept.
    """
    starts = range(0, len(values), window)
    centres = np.array([iterations[s:s + window].mean() for s in starts])
    means = np.array([values[s:s + window].mean() for s in starts])
    stds = np.array([values[s:s + window].std() for s in starts])
    return centres, means, stds


def plot_nfe(traces: list[NFETrace], out: Path, window: int | None = None, quantity: str = "total") -> Path:
    """Plot mean NFE per window with a one-std band, one curve per run; returns the PNG path.

    Args:
        traces: runs to draw.
        out: PNG file to write (folders are created).
        window: records per window; default: about 50 windows per run.
        quantity: "total" (forward + backward), "forward" or "backward".
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for trace in traces:
        values = {"total": trace.nfe_total, "forward": trace.nfe_forward, "backward": trace.nfe_backward}[quantity]
        size = window or max(1, len(values) // 50)
        centres, means, stds = windowed_mean_std(trace.iterations, values, size)
        (line,) = axes.plot(centres, means, label=trace.label)
        axes.fill_between(centres, means - stds, means + stds, color=line.get_color(), alpha=0.25)
    axes.set_xlabel("iteration")
    axes.set_ylabel(f"NFE ({quantity}, mean ± 1 std per window)")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out
