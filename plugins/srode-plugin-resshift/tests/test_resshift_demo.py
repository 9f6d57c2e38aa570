"""The shipped option files: they load, name installed components, and the demo trains (tiny UNet, random init)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import torch

from srode_plugins import api
from srode_plugins import options as options_module

OPTION_FILES = ["resshift_x4.yml", "resshift_x4_demo.yml", "resshift_x4_sampler_sweep.yml"]


def option_path(name: str) -> Path:
    return Path(str(resources.files("srode_resshift.options").joinpath(name)))


@pytest.mark.parametrize("name", OPTION_FILES)
def test_option_files_name_installed_components_and_valid_resshift_blocks(name):
    from srode_resshift.evaluation import SweepSpec, expand_sweep
    from srode_resshift.models import ResShiftOptions

    opt = options_module.load(option_path(name)).opt
    assert opt["model_type"] in api.list_components("models")
    assert opt["network_g"]["type"] in api.list_components("archs")
    resshift = ResShiftOptions.from_options(opt["resshift"])
    schedule = api.build_component("schedules", resshift.schedule)
    assert schedule.num_timesteps == 15 and schedule.kappa == 2.0
    api.build_component("samplers", resshift.sampler)
    assert resshift.autoencoder["type"] in api.list_components("autoencoders")
    sweep = (opt.get("val") or {}).get("sampler_sweep")
    if sweep:
        rows = expand_sweep(SweepSpec.from_options(sweep), lambda n: api.get_component("samplers", n))
        samplers = [api.build_component("samplers", row) for row in rows]
        assert samplers[0].describe()["sampler"] == "discrete" and samplers[0].nfe() == 15
        assert all(sampler.nfe() <= 15 for sampler in samplers)
        assert len(samplers) == 1 + 2 * 4 * 3 + 4 * 3  # baseline + (Euler, Heun) x 4 rho x 3 NFE + 4 sigma-grid x 3


@pytest.mark.slow
def test_demo_option_trains_through_the_engine_and_writes_a_checkpoint(tmp_path):
    from srode_plugins.engine.train import train

    overrides = [
        "train.total_iter=3",
        "datasets.train.gt_size=32",
        "datasets.train.batch_size_per_gpu=2",
        "logger.print_freq=1",
        "logger.save_checkpoint_freq=3",
        "val=~",
    ]
    summary = train(str(option_path("resshift_x4_demo.yml")), overrides=overrides, root=tmp_path)
    assert summary.iter == 3
    checkpoint = torch.load(Path(summary.experiments_root) / "models" / "net_g_3.pth", weights_only=True)
    assert set(checkpoint) == {"params", "params_ema"}


def test_demo_unet_normalises_groups_of_several_channels_so_image_levels_survive_groupnorm():
    # one channel per GroupNorm group erases each image's mean and contrast before the output conv, and the
    # tiny UNet's x0 prediction then stalls near 20 dB (BENCHMARKS.md, ResShift samplers)
    network = options_module.load(option_path("resshift_x4_demo.yml")).opt["network_g"]
    widths = [network["model_channels"] * mult for mult in network["channel_mult"]] + [network["swin_embed_dim"]]
    assert min(width // network["norm_groups"] for width in widths) >= 4
