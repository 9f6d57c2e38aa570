"""The plugin's self-check passes on a healthy install and reports what it checked."""

from __future__ import annotations

from srode_baselines.selfcheck import run


def test_selfcheck_builds_every_option_file_and_reports_the_transfer():
    summary = run()
    assert summary.startswith("24 option files build")
    assert "upsampler new" in summary and "self-ensemble ok" in summary
