"""Upstream BasicSR option files run through srode unchanged: `basicsr train --demo` on shrunken networks, CPU.

The files in tests/upstream_options/ carry the keys and values of BasicSR 1.4.2's own option files; only `--set`
overrides shrink them (network widths, iterations, batch) so a run takes seconds on a CPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

UPSTREAM_OPTIONS = Path(__file__).parent / "upstream_options"
# Two iterations on one patch, validation once at the end, no weights to download: the perceptual loss's VGG is
# randomly initialised (SRODE_RANDOM_INIT_PRETRAINED) and the generator starts from random weights.
QUICK_RUN = ["train.total_iter=2", "datasets.train.batch_size_per_gpu=1", "datasets.train.num_worker_per_gpu=0",
             "path.pretrain_network_g=~", "logger.print_freq=1", "logger.use_tb_logger=false", "val.val_freq=2",
             "val.save_img=false"]


def train_under_demo(option: str, shrink: list[str], cwd: Path) -> subprocess.CompletedProcess:
    overrides = [arg for entry in QUICK_RUN + shrink for arg in ("--set", entry)]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "SRODE_RANDOM_INIT_PRETRAINED": "1"}
    return subprocess.run([sys.executable, "-m", "srode_plugins", "train", "-opt", str(UPSTREAM_OPTIONS / option),
                           "--demo", *overrides], cwd=cwd, env=env, text=True, capture_output=True, timeout=600)


@pytest.mark.slow  # a fresh interpreter, VGG19 built at random and two GAN steps on 128 x 128 crops: ~20 s
def test_msrgan_trains_under_demo_on_the_crop_its_vgg_style_discriminator_is_built_for(tmp_path: Path) -> None:
    result = train_under_demo("train_MSRGAN_x4.yml", ["network_g.num_feat=8", "network_g.num_block=1",
                                                      "network_d.num_feat=2"], tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    experiment = tmp_path / "experiments" / "004_MSRGAN_x4_f64b16_DIV2K_400k_B16G1_wandb"
    log = next(experiment.glob("train_*.log")).read_text()
    assert re.search(r"^ +gt_size: 128$", log, re.M)  # not the 96 that --demo picks for networks taking any crop
    assert re.search(r"^ +use_hflip: True$", log, re.M)  # the file's older `use_flip` reaches the dataset
    assert re.search(r"iter: +2, ", log) and "Validation Set14" in log
    net_d = torch.load(experiment / "models" / "net_d_latest.pth", weights_only=True)["params"]
    assert net_d["conv0_0.weight"].shape == (2, 3, 3, 3)


@pytest.mark.slow  # a fresh interpreter and two steps of on-the-fly second-order degradations: ~15 s
def test_realesrnet_trains_on_the_cpu_under_demo_with_degradations_synthesised_on_the_fly(tmp_path: Path) -> None:
    result = train_under_demo("train_realesrnet_x4plus.yml", ["network_g.num_feat=4", "network_g.num_block=1",
                                                              "network_g.num_grow_ch=4", "gt_size=64"], tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    experiment = tmp_path / "experiments" / "train_RealESRNetx4plus_1000k_B12G4"
    log = next(experiment.glob("train_*.log")).read_text()
    assert re.search(r"^ +num_gpu: 0$", log, re.M) and re.search(r"iter: +2, .* l_pix: ", log)
    state = torch.load(experiment / "models" / "net_g_latest.pth", weights_only=True)
    assert state["params"]["conv_first.weight"].shape == (4, 3, 3, 3)
