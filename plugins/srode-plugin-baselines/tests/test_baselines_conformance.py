"""Every shipped demo option trains, checkpoints, reloads and resumes under the core's conformance kit.

Random initial weights; a few iterations on small patches of the embedded demo data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from srode_plugins.testing import check_model

OPTIONS = Path(__file__).resolve().parents[1] / "srode_baselines" / "options"
QUICK = {"EDSR_baseline_x2_demo", "RRDB_1B_x4_demo"}


def demo_options() -> list:
    paths = sorted(OPTIONS.glob("*_demo.yml"))
    return [pytest.param(p, id=p.stem, marks=() if p.stem in QUICK else pytest.mark.slow) for p in paths]


@pytest.mark.parametrize("option", demo_options())
def test_demo_option_keeps_the_model_contract(option: Path, tmp_path: Path):
    scale = int(option.stem.rsplit("_x", 1)[1].removesuffix("_demo"))
    report = check_model(
        option,
        iters=2,
        root=tmp_path,
        overrides=["datasets.train.batch_size_per_gpu=2", f"datasets.train.gt_size={16 * scale}"],
        validate=False,  # validation runs in the demo training test (test_baselines_training.py)
    )
    assert {"training steps", "weights update", "weights reload", "resume"} <= set(report.passed), str(report)
