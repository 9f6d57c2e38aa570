"""`basicsr resshift fit-schedule` and the plugin self-check."""

import re

import pytest
from srode_resshift.cli import main
from srode_resshift.selfcheck import run


def table_rows(output: str) -> dict[str, list[float]]:
    rows = {}
    for line in output.splitlines():
        match = re.match(r"^(least-squares fit|authors' preset|report's values)\s+(.*)$", line)
        if match:
            rows[match.group(1)] = [float(value) for value in match.group(2).split()]
    return rows


def test_fit_schedule_prints_fit_preset_and_report_side_by_side(capsys):
    assert main(["fit-schedule", "--T", "15", "--kappa", "2"]) == 0
    rows = table_rows(capsys.readouterr().out)
    fitted_a, fitted_lam, fitted_error, fitted_end = rows["least-squares fit"]
    assert (fitted_a, fitted_lam) == pytest.approx((1.098, 1.162), abs=0.001)
    # the authors' lambda is ln(1 + 2.3177576 / 1.1113) = 1.1267550, as the seed's code computes it
    assert rows["authors' preset"] == pytest.approx([1.1113, 1.1268, 0.0344, 0.9457], abs=1e-4)
    assert rows["report's values"] == pytest.approx([1.111, 0.489, 0.6582, 0.3219], abs=1e-4)
    assert fitted_error < rows["authors' preset"][2]
    assert fitted_end == pytest.approx(0.9775, abs=1e-3)


def test_fit_schedule_reports_a_bad_option_with_exit_status_2(capsys):
    assert main(["fit-schedule", "--etas-end", "1.5"]) == 2
    assert "'etas_end'" in capsys.readouterr().out


def test_selfcheck_passes_and_summarises():
    summary = run()
    assert "extension exact" in summary and "ODE states follow the exact flow" in summary
