"""The shipped option files describe the papers' networks and recipes, and load stock BasicSR checkpoints.

The reference networks below are written out from the papers (EDSR: Lim et al. 2017, table 1; RRDBNet:
Wang et al. 2018) independently of the option files, randomly initialised, and saved in BasicSR's format.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import srode_plugins.api  # noqa: F401  (applies the BasicSR compat patches; before basicsr)

# isort: split
from basicsr.archs import build_network
from basicsr.archs.edsr_arch import EDSR
from basicsr.archs.rrdbnet_arch import RRDBNet

OPTIONS = Path(__file__).resolve().parents[1] / "srode_baselines" / "options"
SCALES = (2, 3, 4)
RRDB_DEPTHS = (1, 2, 5, 10, 20, 23)
NETWORK_STEMS = (
    [f"EDSR_baseline_x{s}" for s in SCALES] + [f"EDSR_x{s}" for s in SCALES] + [f"RRDB_{d}B_x4" for d in RRDB_DEPTHS]
)
# Networks of 3M+ parameters take several seconds each to build and run on a shared CPU.
LARGE_STEMS = {"EDSR_x2", "EDSR_x3", "EDSR_x4", "RRDB_5B_x4", "RRDB_10B_x4", "RRDB_20B_x4", "RRDB_23B_x4"}


def paper_network(stem: str) -> nn.Module:
    family, _, scale_part = stem.rpartition("_x")
    scale = int(scale_part)
    if family == "EDSR_baseline":
        return EDSR(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=scale, res_scale=1)
    if family == "EDSR":
        return EDSR(num_in_ch=3, num_out_ch=3, num_feat=256, num_block=32, upscale=scale, res_scale=0.1)
    depth = int(family.removeprefix("RRDB_").removesuffix("B"))
    return RRDBNet(num_in_ch=3, num_out_ch=3, scale=scale, num_feat=64, num_block=depth, num_grow_ch=32)


def sized_stems() -> list:
    return [pytest.param(s, marks=pytest.mark.slow) if s in LARGE_STEMS else s for s in NETWORK_STEMS]


def load(name: str) -> dict:
    return yaml.safe_load((OPTIONS / f"{name}.yml").read_text())


def test_the_shipped_option_set_is_complete():
    expected = {f"{stem}_{data}" for stem in NETWORK_STEMS for data in ("DIV2K", "demo")}
    assert {path.stem for path in OPTIONS.glob("*.yml")} == expected


@pytest.mark.parametrize("stem", sized_stems())
def test_a_stock_basicsr_checkpoint_loads_strictly_and_reproduces_the_stock_output(stem, tmp_path):
    torch.manual_seed(0)
    stock = paper_network(stem).eval()
    checkpoint = tmp_path / "net_g_latest.pth"
    torch.save({"params": stock.state_dict()}, checkpoint)  # what BasicSR's save_network writes

    configured = build_network(load(f"{stem}_DIV2K")["network_g"]).eval()
    configured.load_state_dict(torch.load(checkpoint, weights_only=True)["params"], strict=True)

    # res_scale, rgb_mean and img_range are not in the state dict: equal outputs pin them down too.
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(configured(x), stock(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("stem", NETWORK_STEMS)
def test_each_demo_variant_trains_the_same_network_with_the_same_losses(stem):
    full, demo = load(f"{stem}_DIV2K"), load(f"{stem}_demo")
    for key in ("model_type", "scale", "network_g"):
        assert demo[key] == full[key], key
    assert demo["train"]["pixel_opt"] == full["train"]["pixel_opt"]
    assert demo["train"]["optim_g"] == full["train"]["optim_g"]
    for phase in ("train", "val"):
        assert demo["datasets"][phase]["dataroot_gt"].startswith("demo://")
        assert demo["datasets"][phase]["dataroot_lq"] == f"demo://{phase}/LR_bicubic/X{full['scale']}"


@pytest.mark.parametrize("stem", [f"EDSR{size}_x{s}" for size in ("_baseline", "") for s in SCALES])
def test_edsr_recipes_use_48_pixel_lr_patches_with_flips_rotations_and_l1(stem):
    for variant in ("DIV2K", "demo"):
        opt = load(f"{stem}_{variant}")
        train = opt["datasets"]["train"]
        assert train["gt_size"] == 48 * opt["scale"]
        assert train["use_hflip"] and train["use_rot"]
        assert opt["train"]["pixel_opt"]["type"] == "L1Loss"
        assert opt["network_g"]["rgb_mean"] == [0.4488, 0.4371, 0.4040]  # DIV2K mean shift


@pytest.mark.parametrize("path", sorted(OPTIONS.glob("*.yml")), ids=lambda p: p.stem)
def test_validation_follows_the_standard_protocol(path):
    opt = yaml.safe_load(path.read_text())
    assert opt["name"] == path.stem
    for metric in opt["val"]["metrics"].values():
        assert metric["crop_border"] == opt["scale"]
        assert metric["test_y_channel"] is True
