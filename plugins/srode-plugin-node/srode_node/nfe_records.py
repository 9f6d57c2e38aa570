"""NFE record files: the per-iteration training CSV, the per-image test CSV, and reading them back."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_NFE_CSV = "nfe_train.csv"
_TRAIN_COLUMNS = ["iter", "nfe_forward", "nfe_backward", "skipped"]
_LOG_ITER = re.compile(r"iter:\s*([\d,]+)")
_LOG_VALUE = re.compile(r"\b(nfe_forward|nfe_backward):\s*([-+0-9.eE]+)")


@dataclass(frozen=True)
class NFETrace:
    """Per-iteration NFE of one run; skipped batches are left out. Arrays of equal length."""

    label: str
    iterations: np.ndarray
    nfe_forward: np.ndarray
    nfe_backward: np.ndarray

    @property
    def nfe_total(self) -> np.ndarray:
        """Forward + backward evaluations, as the reference code counts training NFE."""
        return self.nfe_forward + self.nfe_backward


def read_nfe_trace(run_dir: Path) -> NFETrace:
    """Read `nfe_train.csv` from an experiment folder, or parse its `train_*.log` files when there is none.

    The CSV has every iteration; the text log only every `logger.print_freq`-th one.
    """
    run_dir = Path(run_dir)
    csv_path = run_dir / TRAIN_NFE_CSV
    rows: list[tuple[int, float, float]] = []
    if csv_path.is_file():
        with csv_path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row["skipped"] == "0":
                    rows.append((int(row["iter"]), float(row["nfe_forward"]), float(row["nfe_backward"])))
    else:
        for log_path in sorted(run_dir.glob("train_*.log")):
            rows.extend(_parse_log(log_path))
    if not rows:
        raise FileNotFoundError(
            f"no NFE records in {run_dir}: expected {TRAIN_NFE_CSV} or train_*.log lines with nfe_forward "
            "(written by model_type: NODESRModel). Pass the experiment folder, e.g. experiments/<name>"
        )
    rows.sort()
    data = np.asarray(rows, dtype=np.float64)
    return NFETrace(run_dir.name, data[:, 0].astype(int), data[:, 1], data[:, 2])


def _parse_log(log_path: Path) -> list[tuple[int, float, float]]:
    rows = []
    for line in log_path.read_text(errors="replace").splitlines():
        values = dict(_LOG_VALUE.findall(line))
        iteration = _LOG_ITER.search(line)
        if iteration and "nfe_forward" in values:
            rows.append((int(iteration.group(1).replace(",", "")), float(values["nfe_forward"]),
                         float(values.get("nfe_backward", 0.0))))
    return rows


def append_train_record(run_dir: Path, iteration: int, nfe_forward: int | None, nfe_backward: int | None) -> None:
    """Append one iteration to `<run_dir>/nfe_train.csv`; None NFE marks a skipped batch (written as -1)."""
    csv_path = Path(run_dir) / TRAIN_NFE_CSV
    new_file = not csv_path.exists()
    skipped = nfe_forward is None
    with csv_path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(_TRAIN_COLUMNS)
        writer.writerow([iteration, -1 if skipped else nfe_forward, -1 if skipped else nfe_backward, int(skipped)])


def write_test_records(csv_path: Path, records: list[tuple[str, int]]) -> Path:
    """Write `(image name, forward NFE)` rows to `csv_path` (folders are created); returns the path."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "nfe_forward"])
        writer.writerows(records)
    return csv_path
