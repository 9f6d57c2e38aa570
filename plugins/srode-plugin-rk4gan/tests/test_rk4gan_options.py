"""Every shipped option file validates, names installed components with valid keywords, and builds its networks."""

from __future__ import annotations

import inspect
from importlib import resources
from pathlib import Path

import pytest
import torch

from srode_plugins import options as options_mod
from srode_plugins.api import get_component
from srode_plugins.engine import setup

OPTION_FILES = sorted(p for p in resources.files("srode_rk4gan.options").iterdir() if p.name.endswith(".yml"))


def component_options(opt: dict) -> list[tuple[str, dict]]:
    found = [("archs", opt[key]) for key in ("network_g", "network_d") if key in opt]
    found += [("losses", v) for k, v in opt["train"].items() if k.endswith("_opt") and isinstance(v, dict)]
    return found


def test_the_family_ships_the_issue_s_option_files() -> None:
    names = {p.name for p in OPTION_FILES}

    assert {
        "rk4_dualattn_gan.yml",
        "rk4_dualattn_gan_x2.yml",
        "rk4_dualattn_psnr_x4.yml",
        "ablation_euler_dualattn_psnr_x4.yml",
        "ablation_rk4_noattn_psnr_x4.yml",
        "ablation_rk4_channelattn_psnr_x4.yml",
        "ablation_rk4_spatialattn_psnr_x4.yml",
        "rcan_small_psnr_x4.yml",
        "dualattn_rcan_small_psnr_x4.yml",
        "rk4_dualattn_gan_demo.yml",
    } <= names


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: p.name)
def test_option_file_validates_and_its_keys_match_the_constructors(path: Path) -> None:
    opts = options_mod.load(path)
    setup.validate_common(opts, is_train=True)
    setup.resolve_components(opts)

    for kind, component_opt in component_options(opts.opt):
        kwargs = {k: v for k, v in component_opt.items() if k != "type"}
        inspect.signature(get_component(kind, component_opt["type"])).bind(**kwargs)
    scale = opts.opt["scale"]
    assert opts.opt["network_g"].get("upscale", scale) == scale
    for metric in opts.opt["val"]["metrics"].values():
        assert metric["crop_border"] == scale


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: p.name)
def test_option_file_networks_build_and_upscale_by_the_file_s_scale(path: Path) -> None:
    from basicsr.archs import build_network

    opts = options_mod.load(path)
    setup.resolve_components(opts)  # registers the plugin archs into BasicSR's registry
    opt = opts.opt
    net_g = build_network(opt["network_g"])
    with torch.no_grad():
        out = net_g(torch.rand(1, 3, 8, 8))
    assert out.shape[-1] == 8 * opt["scale"]
    if "network_d" in opt:
        gt_size = opt["datasets"]["train"]["gt_size"]
        assert build_network(opt["network_d"]).eval()(torch.rand(1, 3, gt_size, gt_size)).shape == (1, 1)


def test_real_data_files_point_at_the_div2k_layout() -> None:
    for path in OPTION_FILES:
        train = options_mod.load(path).opt["datasets"]["train"]
        if path.name.endswith("_demo.yml"):
            assert train["dataroot_gt"].startswith("demo://")
            continue
        scale = options_mod.load(path).opt["scale"]
        assert train["dataroot_gt"] == "datasets/DIV2K/DIV2K_train_HR", path.name
        assert train["dataroot_lq"] == f"datasets/DIV2K/DIV2K_train_LR_bicubic/X{scale}", path.name
        assert train["filename_tmpl"] == f"{{}}x{scale}", path.name
