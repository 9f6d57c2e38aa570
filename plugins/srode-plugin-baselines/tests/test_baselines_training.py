"""Training the shipped EDSR-baseline demo option beats bicubic on the held-out demo photos.

Starts from random weights (no pretrained model). Shortened so it runs in a few minutes on a CPU: smaller
batch and LR patches and a higher learning rate than the paper recipe; the network is the shipped one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import srode_plugins.api  # noqa: F401  (applies the BasicSR compat patches; before basicsr)

# isort: split
from srode_baselines.heldout import bicubic_upscale, heldout_score, network_upscale

OPTIONS = Path(__file__).resolve().parents[1] / "srode_baselines" / "options"
SHORT_SCHEDULE = [
    "train.total_iter=500",
    "train.optim_g.lr=5e-4",
    "train.scheduler.milestones=[400]",
    "datasets.train.batch_size_per_gpu=8",
    "datasets.train.gt_size=64",
    "logger.use_tb_logger=false",
    "logger.save_checkpoint_freq=1000000",
    "val.val_freq=1000000",
]


@pytest.mark.slow
def test_demo_training_of_edsr_baseline_x2_beats_bicubic_psnr_on_held_out_photos(tmp_path):
    from srode_plugins.engine.train import train

    summary = train(str(OPTIONS / "EDSR_baseline_x2_demo.yml"), overrides=SHORT_SCHEDULE, root=tmp_path)
    model = summary["model"]
    net = model.net_g.eval()

    trained = heldout_score(lambda lr: network_upscale(net, lr, model.device), scale=2)
    bicubic = heldout_score(lambda lr: bicubic_upscale(lr, 2), scale=2)
    assert trained.psnr > bicubic.psnr, f"trained {trained.psnr:.2f} dB vs bicubic {bicubic.psnr:.2f} dB"
