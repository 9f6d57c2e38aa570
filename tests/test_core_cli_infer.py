"""`basicsr infer` end to end: --arch/--weights and -opt, tiled and whole, on a demo photo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from srode_plugins.data.demo import demo_dataset


def arch_args(num_block: int) -> list[str]:
    pairs = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": num_block, "upscale": 2}
    return ["--arch", "EDSR"] + [part for k, v in pairs.items() for part in ("--arch-opt", f"{k}={v}")]


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "srode_plugins", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def edsr_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from basicsr.archs.edsr_arch import EDSR


    torch.manual_seed(0)
    net = EDSR(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2)
    path = tmp_path_factory.mktemp("ckpt") / "edsr_tiny.pth"
    torch.save({"params": net.state_dict()}, path)
    return path


def test_infer_with_arch_and_weights_matches_tiled_and_whole(tmp_path: Path, edsr_checkpoint: Path) -> None:
    photo = demo_dataset(2).val_lr / "rocket.png"
    base = ["infer", *arch_args(1), "--weights", str(edsr_checkpoint), "--scale", "2", "--input", str(photo)]
    whole = run_cli([*base, "--output", str(tmp_path / "whole")], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    tiled = run_cli([*base, "--output", str(tmp_path / "tiled"), "--tile", "64", "--overlap", "8"], cwd=tmp_path)
    assert tiled.returncode == 0, tiled.stderr[-2000:]
    lr = cv2.imread(str(photo))
    a = cv2.imread(str(tmp_path / "whole" / "rocket.png")).astype(np.int16)
    b = cv2.imread(str(tmp_path / "tiled" / "rocket.png")).astype(np.int16)
    assert a.shape == (lr.shape[0] * 2, lr.shape[1] * 2, 3)
    # A 1-block EDSR sees 9 LR pixels around each output; an 8-pixel overlap blends away most seams.
    assert np.abs(a - b).mean() < 0.5


def test_infer_with_mismatched_weights_lists_the_keys(tmp_path: Path, edsr_checkpoint: Path) -> None:
    photo = demo_dataset(2).val_lr / "rocket.png"
    result = run_cli(["infer", *arch_args(2), "--weights", str(edsr_checkpoint), "--input", str(photo),
                      "--output", str(tmp_path / "out")], cwd=tmp_path)
    assert result.returncode == 2
    assert "does not match the network" in result.stderr
    assert "4 missing: body.1.conv1.bias, body.1.conv1.weight" in result.stderr


def test_infer_from_an_option_file(tmp_path: Path, edsr_checkpoint: Path) -> None:
    option = tmp_path / "edsr.yml"
    option.write_text(yaml.safe_dump({
        "name": "infer", "model_type": "SRModel", "scale": 2,
        "network_g": {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "upscale": 2},
        "path": {"pretrain_network_g": str(edsr_checkpoint)},
    }))
    folder = demo_dataset(2).val_lr
    result = run_cli(["infer", "-opt", str(option), "--input", str(folder), "--output", str(tmp_path / "out")],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in folder.glob("*.png"))


def test_evaluate_prints_per_image_rows_and_the_mean(tmp_path: Path) -> None:
    paths = demo_dataset(2)
    table = tmp_path / "scores.md"
    result = run_cli(["evaluate", "--sr", str(paths.val_hr), "--hr", str(paths.val_hr), "--scale", "2",
                      "--markdown", str(table)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    text = table.read_text()
    assert "| rocket | inf | 1.0000 |" in text and "| **mean** |" in text  # identical images: PSNR inf, SSIM 1
