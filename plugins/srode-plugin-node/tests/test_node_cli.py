"""`basicsr node` tools: NFE traces from CSV or text logs, the windowed band, the plot and the Table-1 writer."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from srode_node.cli import main
from srode_node.nfe_plot import windowed_mean_std
from srode_node.nfe_records import append_train_record, read_nfe_trace
from srode_node.sweep import SweepRow, format_markdown, write_tables

# two lines as BasicSR's MessageLogger writes them (iteration with thousands separators), one unrelated line
LOG_LINES = """\
2026-11-24 08:22:15,994 INFO: [NODE_..][epoch:  0, iter:   1,000, lr:(5.000e-04,)] [eta: 0:00:04, time (data): \
4.098 (0.000)] l_pix: 8.2351e-02 nfe_forward: 2.6000e+01 nfe_backward: 3.8000e+01 skipped_steps: 0.0000e+00
2026-11-24 08:22:16,000 INFO: Validation demo_val
2026-11-24 08:22:18,360 INFO: [NODE_..][epoch:  0, iter:   2,000, lr:(5.000e-04,)] [eta: 0:00:02, time (data): \
3.232 (0.000)] l_pix: 5.5719e-02 nfe_forward: 3.2000e+01 nfe_backward: 4.4000e+01 skipped_steps: 0.0000e+00
"""


def test_trace_is_parsed_from_a_basicsr_text_log(tmp_path: Path) -> None:
    (tmp_path / "train_run_20261124.log").write_text(LOG_LINES)
    trace = read_nfe_trace(tmp_path)
    assert trace.iterations.tolist() == [1000, 2000]
    assert trace.nfe_forward.tolist() == [26.0, 32.0]
    assert trace.nfe_total.tolist() == [64.0, 76.0]


def test_per_iteration_csv_wins_over_the_log_and_skipped_batches_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "train_run.log").write_text(LOG_LINES)
    append_train_record(tmp_path, 1, 10, 20)
    append_train_record(tmp_path, 2, None, None)
    append_train_record(tmp_path, 3, 12, 22)
    trace = read_nfe_trace(tmp_path)
    assert trace.iterations.tolist() == [1, 3]
    assert trace.nfe_backward.tolist() == [20.0, 22.0]


def test_missing_records_name_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nfe_train.csv"):
        read_nfe_trace(tmp_path)


def test_window_statistics_match_numpy_on_each_chunk() -> None:
    iterations = np.arange(1, 8)
    values = np.array([1.0, 3.0, 5.0, 7.0, 2.0, 2.0, 9.0])
    centres, means, stds = windowed_mean_std(iterations, values, 3)
    assert centres.tolist() == [2.0, 5.0, 7.0]
    assert means.tolist() == [3.0, pytest.approx(11 / 3), 9.0]
    assert stds[0] == pytest.approx(np.std([1.0, 3.0, 5.0]))
    assert stds[2] == 0.0


def test_plot_nfe_command_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "experiments" / "node_run"
    run.mkdir(parents=True)
    for iteration in range(1, 41):
        append_train_record(run, iteration, 20 + iteration % 5, 30 + iteration % 7)
    out = tmp_path / "nfe.png"
    assert main(["plot-nfe", str(run), "--out", str(out), "--window", "8"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "node_run: 40 iterations" in capsys.readouterr().out


def test_sweep_tables_have_one_row_per_configuration(tmp_path: Path) -> None:
    rows = [
        SweepRow("RRDB (5 blocks)", "-", 1_000, 27.5, 0.75, None, None, 0, 0.2, "ok", "a.yml"),
        SweepRow("NODE (aut.)", "adjoint", None, None, None, None, None, 0, None, "aborted: max | nfe", "b.yml"),
    ]
    markdown_path, csv_path = write_tables(rows, tmp_path)
    lines = markdown_path.read_text().splitlines()
    assert len(lines) == 4
    assert "| RRDB (5 blocks) | - | 1,000 | 27.50 | 0.7500 | - | - | 0 | 0.200 | ok | a.yml |" in lines
    assert "aborted: max / nfe" in lines[3]  # a '|' inside a cell would break the table
    assert format_markdown(rows) == markdown_path.read_text()
    with csv_path.open() as handle:
        assert [row["model"] for row in csv.DictReader(handle)] == ["RRDB (5 blocks)", "NODE (aut.)"]


def test_selfcheck_passes_and_summarises() -> None:
    from srode_node.selfcheck import run

    assert "569,251" in run()


@pytest.mark.slow
def test_sweep_trains_each_option_file_on_demo_data_and_reports_nfe(tmp_path: Path) -> None:
    from srode_node.sweep import run_sweep

    options = Path(__file__).resolve().parents[1] / "srode_node" / "options"
    tiny = ["train.total_iter=2", "logger.print_freq=1", "logger.use_tb_logger=false", "network_g.num_feat=8",
            "network_g.augment_channels=2", "datasets.train.batch_size_per_gpu=2", "datasets.train.gt_size=32"]
    files = [str(options / "NODE_T1_ANODE_x4_BSD.yml"), str(options / "NODE_T1_NODE_time_adjoint_x4_BSD.yml")]
    rows = run_sweep(files, overrides=tiny, demo=True, root=tmp_path)
    assert [row.status for row in rows] == ["ok", "ok"]
    assert rows[0].backprop == "checkpointed" and rows[0].nfe_forward == 20.0 and rows[0].nfe_backward == 20.0
    assert rows[1].backprop == "adjoint" and rows[1].nfe_backward > 0
    assert all(row.psnr is not None and row.params for row in rows)
