"""`basicsr demo` (the README's main job): the trained model beats bicubic on the held-out demo photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from srode_plugins.demo_job import DEFAULT_SCALE, DEMO_ITERS, run_demo


@pytest.mark.slow
def test_demo_beats_bicubic_and_writes_the_pictures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_demo(scale=DEFAULT_SCALE, iters=DEMO_ITERS[DEFAULT_SCALE], out_dir=tmp_path / "demo")
    assert result["model_psnr"] > result["bicubic_psnr"] + 0.1
    out = tmp_path / "demo"
    pictures = sorted(out.glob("compare_*.png"))
    assert [p.stem for p in pictures] == ["compare_chelsea", "compare_coffee", "compare_rocket"]
    panel = cv2.imread(str(pictures[0]))
    assert panel.shape[1] > 3 * panel.shape[0]  # three crops side by side
    assert (out / "loss_curve.png").stat().st_size > 0
    assert "| mean |" in (out / "results.md").read_text()
