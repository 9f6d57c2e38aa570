"""ContinuousResShiftModel on the demo data with a tiny randomly initialised stand-in network."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srode_plugins import api

# srode_plugins.api applies the BasicSR compat patches, so basicsr is imported after it
# isort: split
from basicsr.utils.registry import ARCH_REGISTRY
from srode_resshift.models import ContinuousResShiftModel
from srode_resshift.training import predict_x0_on_forward_samples

NUM_TIMESTEPS = 15


class ResShiftStandInNet(nn.Module):
    """Stand-in for the ResShift UNet (same call signature): convs over [x, upsampled lq, time map]."""

    def __init__(self, channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(2 * channels + 1, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1)
        )
        self.seen_timesteps: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, lq: torch.Tensor | None) -> torch.Tensor:
        self.seen_timesteps.append(timesteps.detach().cpu())
        lq_up = F.interpolate(lq, size=x.shape[-2:], mode="bicubic", align_corners=False)
        time_map = (timesteps / NUM_TIMESTEPS).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]).to(x.dtype)
        return lq_up + self.body(torch.cat([x, lq_up, time_map], dim=1))


if "ResShiftStandInNet" not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(ResShiftStandInNet)


def make_options(tmp_path: Path, **resshift) -> dict:
    root = tmp_path / "run"
    paths = {key: str(root / key) for key in ("models", "training_states", "visualization", "log")}
    for folder in paths.values():
        os.makedirs(folder, exist_ok=True)
    return {
        "name": "resshift_test",
        "model_type": "ContinuousResShiftModel",
        "scale": 4,
        "num_gpu": 0,
        "dist": False,
        "rank": 0,
        "world_size": 1,
        "is_train": True,
        "network_g": {"type": "ResShiftStandInNet", "width": 16},
        "path": {**paths, "results_root": str(root), "pretrain_network_g": None, "strict_load_g": True},
        "resshift": {
            "schedule": {"type": "ContinuousPowerSchedule", "num_timesteps": NUM_TIMESTEPS, "kappa": 2.0},
            "sampler": {"type": "HeunSampler", "num_steps": 3, "grid": "sigma", "rho": 7.0},
            **resshift,
        },
        "train": {
            "ema_decay": 0.9,
            "optim_g": {"type": "Adam", "lr": 3e-3},
            "scheduler": {"type": "MultiStepLR", "milestones": [1000], "gamma": 0.5},
            "pixel_opt": {"type": "MSELoss", "loss_weight": 1.0},
        },
        "val": {"crop_border": 4},
    }


def demo_patches(count: int = 4, hr_size: int = 32) -> dict[str, torch.Tensor]:
    """Fixed HR/LR patch pairs cut from the demo training photos (BGR->RGB, [0, 1])."""
    paths = api.demo_dataset(scale=4)
    names = sorted(os.listdir(paths.train_hr))[:count]
    hr, lr = [], []
    for name in names:
        hr_image = cv2.imread(str(paths.train_hr / name))[:hr_size, :hr_size, ::-1] / 255.0
        lr_image = cv2.imread(str(paths.train_lr / name))[: hr_size // 4, : hr_size // 4, ::-1] / 255.0
        hr.append(torch.from_numpy(np.ascontiguousarray(hr_image)).permute(2, 0, 1).float())
        lr.append(torch.from_numpy(np.ascontiguousarray(lr_image)).permute(2, 0, 1).float())
    return {"gt": torch.stack(hr), "lq": torch.stack(lr)}


def fixed_noise_loss(model: ContinuousResShiftModel, batch: dict[str, torch.Tensor]) -> float:
    """x0 MSE of net_g on fixed draws of (t, noise), for comparing before / after training."""
    torch.manual_seed(123)
    with torch.no_grad():
        x0 = model.autoencoder.encode(batch["gt"])
        y = model.autoencoder.encode(model.upsample_lq(batch["lq"]))
        losses = []
        for _ in range(8):
            prediction = predict_x0_on_forward_samples(
                model.denoiser(model.net_g), model.schedule, x0, y, batch["lq"] * 2 - 1, model.resshift.time_sampling
            )
            losses.append(float(F.mse_loss(prediction, x0)))
    return float(np.mean(losses))


@pytest.fixture
def batch():
    return demo_patches()


@pytest.mark.parametrize("time_sampling", ["continuous", "discrete"])
def test_a_few_training_iterations_on_demo_data_lower_the_x0_loss(tmp_path, batch, time_sampling):
    torch.manual_seed(0)
    model = ContinuousResShiftModel(make_options(tmp_path, time_sampling=time_sampling))
    before = fixed_noise_loss(model, batch)
    for iteration in range(1, 31):
        model.feed_data(batch)
        model.optimize_parameters(iteration)
    after = fixed_noise_loss(model, batch)
    assert np.isfinite(model.log_dict["l_x0"])
    assert after < 0.7 * before, (before, after)


@pytest.mark.slow
def test_the_demo_tiny_unet_lowers_the_x0_loss_in_a_few_iterations(tmp_path, batch):
    from importlib import resources

    from srode_plugins import options as options_module

    demo_file = resources.files("srode_resshift.options").joinpath("resshift_x4_demo.yml")
    network = options_module.load(str(demo_file)).opt["network_g"]
    api.get_component("archs", network["type"])  # registers UNetModelSwin into BasicSR's ARCH_REGISTRY
    options = make_options(tmp_path)
    options["network_g"] = network
    torch.manual_seed(0)
    model = ContinuousResShiftModel(options)
    small = {"gt": batch["gt"][:2], "lq": batch["lq"][:2]}
    before = fixed_noise_loss(model, small)
    for iteration in range(1, 16):
        model.feed_data(small)
        model.optimize_parameters(iteration)
    after = fixed_noise_loss(model, small)
    assert after < 0.7 * before, (before, after)


def test_training_times_are_continuous_or_chain_steps_and_fed_as_T_t_minus_1(tmp_path, batch):
    for time_sampling in ("continuous", "discrete"):
        torch.manual_seed(1)
        model = ContinuousResShiftModel(make_options(tmp_path, time_sampling=time_sampling))
        model.net_g.seen_timesteps.clear()
        for iteration in range(1, 11):
            model.feed_data(batch)
            model.optimize_parameters(iteration)
        fed = torch.cat(model.net_g.seen_timesteps)
        assert float(fed.min()) >= -1e-5 and float(fed.max()) <= NUM_TIMESTEPS - 1 + 1e-5
        is_integer = torch.allclose(fed, fed.round(), atol=1e-5)
        assert is_integer == (time_sampling == "discrete")


def test_sampling_feeds_the_same_time_direction_as_training(tmp_path, batch):
    # chain step k is fed as k in training (t = (k + 1) / T); samplers walk from k = T-1 (t = 1) down to 0
    model = ContinuousResShiftModel(make_options(tmp_path))
    net = model.inference_network()
    for sampler_opt, expected in [
        ({"type": "DiscreteResShiftSampler", "num_steps": NUM_TIMESTEPS}, list(range(NUM_TIMESTEPS - 1, -1, -1))),
        ({"type": "EulerSampler", "num_steps": NUM_TIMESTEPS, "grid": "t", "rho": 1.0}, None),
    ]:
        net.seen_timesteps.clear()
        sampler = api.build_component("samplers", sampler_opt)
        model.super_resolve(batch["lq"][:1], sampler, seed=0)
        fed = [float(t[0]) for t in net.seen_timesteps]
        assert fed[0] == pytest.approx(NUM_TIMESTEPS - 1) and fed[-1] == pytest.approx(0.0, abs=1e-5)
        if expected is not None:
            assert fed == pytest.approx(expected)
        else:  # the uniform t grid from 1 to 1/T hits every chain step
            assert fed == pytest.approx(list(range(NUM_TIMESTEPS - 1, -1, -1)), abs=1e-4)


def test_ema_network_follows_the_exponential_average(tmp_path, batch):
    model = ContinuousResShiftModel(make_options(tmp_path))
    ema_before = copy.deepcopy(dict(model.net_g_ema.named_parameters()))
    model.feed_data(batch)
    model.optimize_parameters(1)
    for name, parameter in model.net_g.named_parameters():
        expected = 0.9 * ema_before[name] + 0.1 * parameter
        torch.testing.assert_close(dict(model.net_g_ema.named_parameters())[name], expected)
    assert model.inference_network() is model.net_g_ema


def test_test_returns_sr_images_in_range_with_the_sampler_nfe(tmp_path, batch):
    model = ContinuousResShiftModel(make_options(tmp_path))
    model.feed_data({"lq": batch["lq"][:2, :, :7, :6], "gt": batch["gt"][:2, :, :28, :24]})
    model.test()
    assert model.output.shape == (2, 3, 28, 24)
    assert 0.0 <= float(model.output.min()) and float(model.output.max()) <= 1.0
    assert model.last_nfe == 5  # Heun, 3 grid points


def test_validation_is_reproducible_with_a_fixed_seed(tmp_path, batch):
    model = ContinuousResShiftModel(make_options(tmp_path))
    first, _ = model.super_resolve(batch["lq"][:1], model.sampler, seed=7)
    second, _ = model.super_resolve(batch["lq"][:1], model.sampler, seed=7)
    torch.testing.assert_close(first, second)


def test_checkpoint_round_trip_restores_the_samples(tmp_path, batch):
    torch.manual_seed(2)
    model = ContinuousResShiftModel(make_options(tmp_path))
    for iteration in range(1, 4):
        model.feed_data(batch)
        model.optimize_parameters(iteration)
    model.save(epoch=0, current_iter=3)
    checkpoint = Path(model.opt["path"]["models"]) / "net_g_3.pth"
    assert checkpoint.is_file()
    options = make_options(tmp_path)
    options["is_train"] = False
    options["path"]["pretrain_network_g"] = str(checkpoint)
    options["path"]["param_key_g"] = "params_ema"
    restored = ContinuousResShiftModel(options)
    expected, _ = model.super_resolve(batch["lq"][:1], model.sampler, seed=3)
    actual, _ = restored.super_resolve(batch["lq"][:1], restored.sampler, seed=3)
    torch.testing.assert_close(actual, expected)


class DemoValCrops(torch.utils.data.Dataset):
    """Two small crops of the demo validation photos, in the BasicSR paired-dataset item layout."""

    def __init__(self) -> None:
        self.opt = {"name": "demo_val_crops"}
        paths = api.demo_dataset(scale=4)
        self.items = []
        for name in sorted(os.listdir(paths.val_hr))[:2]:
            hr = cv2.imread(str(paths.val_hr / name))[:48, :40, ::-1] / 255.0
            lr = cv2.imread(str(paths.val_lr / name))[:12, :10, ::-1] / 255.0
            self.items.append(
                {
                    "gt": torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1).float(),
                    "lq": torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1).float(),
                    "lq_path": name,
                    "gt_path": name,
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def test_sampler_sweep_prints_the_table_and_writes_grids(tmp_path, caplog):
    options = make_options(tmp_path)
    options["val"]["sampler_sweep"] = {
        "samplers": [
            {"type": "DiscreteResShiftSampler", "num_steps": 15},
            {"type": "EulerSampler", "grid": "t"},
            {"type": "HeunSampler", "grid": "t"},
        ],
        "rho": [1, 2],
        "nfe": [3, 5],
        "grid_images": 1,
    }
    model = ContinuousResShiftModel(options)
    loader = torch.utils.data.DataLoader(DemoValCrops(), batch_size=1)
    model.validation(loader, current_iter=0, tb_logger=None, save_img=True)
    rows = model.sweep_rows
    described = [(r.description["sampler"], r.description["rho"], r.description["nfe"]) for r in rows]
    assert described == [
        ("discrete", "-", 15),
        ("Euler", "1", 3), ("Euler", "1", 5), ("Euler", "2", 3), ("Euler", "2", 5),
        ("Heun", "1", 3), ("Heun", "1", 5), ("Heun", "2", 3), ("Heun", "2", 5),
    ]  # fmt: skip
    assert all(np.isfinite(r.psnr) and 0 < r.ssim <= 1 and r.lpips is None for r in rows)
    table = (Path(options["path"]["results_root"]) / "sampler_sweep_demo_val_crops.md").read_text()
    assert table.count("\n| ") == len(rows) + 1
    grids = list((Path(options["path"]["visualization"]) / "demo_val_crops").glob("*_sweep.png"))
    assert len(grids) == 1
    grid = cv2.imread(str(grids[0]))
    panels = len(rows) + 2  # bicubic | every row | HR
    assert grid.shape[:2] == (48, panels * 40 + (panels - 1) * 4)


def test_bad_resshift_options_name_the_key(tmp_path):
    with pytest.raises(api.OptionError, match="resshift.time_sampling"):
        ContinuousResShiftModel(make_options(tmp_path, time_sampling="sometimes"))
    with pytest.raises(api.OptionError, match="resshift.schedule.type"):
        ContinuousResShiftModel(make_options(tmp_path, schedule={"type": "DiscretePowerSchedule"}))
    with pytest.raises(api.OptionError, match="unknown key"):
        ContinuousResShiftModel(make_options(tmp_path, sampelr={"type": "HeunSampler"}))


def test_a_sampler_that_cannot_run_on_the_schedule_is_refused_when_the_model_is_built(tmp_path):
    # caught at construction, not at the first validation hours into training
    unstable = {"type": "HeunSampler", "num_steps": 4, "grid": "t", "rho": 1.0, "variable": "eta"}
    with pytest.raises(api.OptionError, match=r"resshift\.sampler.*variable: eta is unstable"):
        ContinuousResShiftModel(make_options(tmp_path, sampler=unstable))
    too_many = {"type": "DiscreteResShiftSampler", "num_steps": NUM_TIMESTEPS + 1}
    with pytest.raises(api.OptionError, match=r"resshift\.sampler.*'num_steps' \(\d+\) exceeds"):
        ContinuousResShiftModel(make_options(tmp_path, sampler=too_many))
    options = make_options(tmp_path)
    options["val"]["sampler_sweep"] = {"samplers": [{"type": "HeunSampler", "grid": "t", "variable": "eta"}]}
    with pytest.raises(api.OptionError, match=r"val\.sampler_sweep\.samplers.*variable: eta is unstable"):
        ContinuousResShiftModel(options)


def test_missing_lpips_weights_name_the_file_and_the_switch(tmp_path):
    options = make_options(tmp_path)
    options["train"]["lpips_opt"] = {"loss_weight": 0.1, "backbone_path": str(tmp_path / "nowhere.pth")}
    with pytest.raises(api.MissingWeightsError, match="alexnet-owt-7be5be79.pth.*lpips_opt"):
        ContinuousResShiftModel(options)


def test_a_bare_official_style_state_dict_loads_as_pretrained_network(tmp_path, batch):
    source = ContinuousResShiftModel(make_options(tmp_path))
    bare = tmp_path / "official_style.pth"
    torch.save({f"module.{k}": v for k, v in source.net_g.state_dict().items()}, bare)
    options = make_options(tmp_path)
    options["is_train"] = False
    options["path"]["pretrain_network_g"] = str(bare)
    restored = ContinuousResShiftModel(options)
    for name, value in source.net_g.state_dict().items():
        torch.testing.assert_close(restored.net_g.state_dict()[name], value)


def test_optional_lpips_term_is_added_to_the_training_loss(tmp_path, batch):
    import torchvision

    backbone = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), backbone)  # random stand-in weights
    options = make_options(tmp_path)
    options["train"]["lpips_opt"] = {"loss_weight": 0.1, "net": "alex", "backbone_path": str(backbone)}
    model = ContinuousResShiftModel(options)
    model.feed_data(batch)
    model.optimize_parameters(1)
    assert set(model.log_dict) == {"l_x0", "l_lpips"}
    assert model.log_dict["l_lpips"] > 0


def test_latent_space_training_and_sampling_through_a_vq_autoencoder(tmp_path, batch):
    # a small randomly initialised VQ-f4 autoencoder (the official one is 55.3M parameters and loads from a file)
    autoencoder = {
        "type": "VQAutoencoderF4",
        "load_weights": False,
        "channels": 32,
        "channel_mult": [1, 2, 4],
        "num_res_blocks": 1,
        "n_embed": 64,
    }
    model = ContinuousResShiftModel(make_options(tmp_path, autoencoder=autoencoder))
    assert model.autoencoder.downsample_factor == 4
    model.feed_data(batch)
    model.optimize_parameters(1)
    assert np.isfinite(model.log_dict["l_x0"])
    output, nfe = model.super_resolve(batch["lq"][:1], model.sampler, seed=0)
    assert output.shape == batch["gt"][:1].shape and nfe == 5


def test_clip_denoised_auto_clamps_x0_in_pixel_space_only_as_the_official_sampler(tmp_path):
    latent = {"type": "VQAutoencoderF4", "load_weights": False, "channels": 32, "channel_mult": [1, 2, 4],
              "num_res_blocks": 1, "n_embed": 64}  # fmt: skip
    assert ContinuousResShiftModel(make_options(tmp_path)).denoiser(nn.Identity()).clip_denoised is True
    assert ContinuousResShiftModel(make_options(tmp_path, autoencoder=latent)).clip_denoised is False
    assert ContinuousResShiftModel(make_options(tmp_path, clip_denoised=False)).clip_denoised is False
    with pytest.raises(api.OptionError, match=r"resshift\.clip_denoised.*'sometimes'"):
        ContinuousResShiftModel(make_options(tmp_path, clip_denoised="sometimes"))


def test_a_typo_inside_the_resshift_block_is_refused_before_anything_is_built():
    from importlib import resources

    from srode_plugins.schema import validate

    option = str(resources.files("srode_resshift.options").joinpath("resshift_x4.yml"))
    with pytest.raises(api.OptionError, match=r"option 'resshift.time_samplng'.*Did you mean: time_sampling"):
        validate(api.load_options(option, ["resshift.time_samplng=discrete"]), is_train=True)
