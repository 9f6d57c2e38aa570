"""BasicSR's own SRGANModel trains RK4DualAttnRDN against SRGANDiscriminator; checkpoints round-trip."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from srode_plugins.api import get_component

NETWORK_G = {
    "type": "RK4DualAttnRDN",
    "upscale": 2,
    "num_feat": 8,
    "num_block": 2,
    "num_layer": 2,
    "growth_rate": 4,
    "se_reduction": 4,
    "integrator": "rk4",
    "attention": "dual",
    "nonlocal_kind": "embedded",
    "nonlocal_window": 8,
}
NETWORK_D = {"type": "SRGANDiscriminator", "num_feat": 8, "head": "pooled"}


def gan_options(root: Path) -> dict[str, Any]:
    for kind, name in (
        ("archs", "RK4DualAttnRDN"),
        ("archs", "SRGANDiscriminator"),
        ("losses", "LocalVGGPerceptualLoss"),
    ):
        get_component(kind, name)  # registers the plugin component into BasicSR's registry
    return {
        "name": "rk4gan_unit",
        "model_type": "SRGANModel",
        "scale": 2,
        "num_gpu": 0,
        "is_train": True,
        "dist": False,
        "rank": 0,
        "world_size": 1,
        "network_g": dict(NETWORK_G),
        "network_d": dict(NETWORK_D),
        "path": {
            "pretrain_network_g": None,
            "strict_load_g": True,
            "resume_state": None,
            "models": str(root / "models"),
            "training_states": str(root / "training_states"),
        },
        "train": {
            "optim_g": {"type": "Adam", "lr": 1e-3},
            "optim_d": {"type": "Adam", "lr": 1e-3},
            "scheduler": {"type": "MultiStepLR", "milestones": [100], "gamma": 0.5},
            "total_iter": 1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
            # random_init: the test runs without VGG19 weights; the loss is then not perceptual, only wired.
            "perceptual_opt": {
                "type": "LocalVGGPerceptualLoss",
                "layer_weights": {"conv1_2": 1.0},
                "random_init": True,
            },
            "gan_opt": {"type": "GANLoss", "gan_type": "vanilla", "loss_weight": 0.1},
            "net_d_iters": 1,
            "net_d_init_iters": 0,
        },
    }


def build_model(opt: dict[str, Any]) -> Any:
    from basicsr.models import build_model as basicsr_build_model

    return basicsr_build_model(copy.deepcopy(opt))


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in net.named_parameters()}


def changed(net: torch.nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {name for name, p in net.named_parameters() if not torch.equal(p.detach(), before[name])}


def train_one_step(opt: dict[str, Any]) -> tuple[Any, dict[str, set[str]]]:
    torch.manual_seed(0)
    model = build_model(opt)
    before_g, before_d = snapshot(model.net_g), snapshot(model.net_d)
    model.feed_data({"lq": torch.rand(2, 3, 12, 12), "gt": torch.rand(2, 3, 24, 24)})
    model.optimize_parameters(1)
    return model, {"g": changed(model.net_g, before_g), "d": changed(model.net_d, before_d)}


def test_one_gan_iteration_updates_generator_discriminator_and_rk_coefficients(tmp_path) -> None:
    model, updated = train_one_step(gan_options(tmp_path))

    assert {"l_g_pix", "l_g_percep", "l_g_gan", "l_d_real", "l_d_fake"} <= set(model.log_dict)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in model.log_dict.values())
    assert {
        "shallow_conv1.weight",
        "blocks.0.one_sixth",
        "blocks.1.one_half",
        "blocks.0.residual.attention.0.theta.weight",
    } <= updated["g"]
    assert {"features.0.weight", "head.1.weight", "head.3.bias"} <= updated["d"]


def test_checkpoint_round_trip_restores_both_networks_and_the_optimizers(tmp_path) -> None:
    opt = gan_options(tmp_path)
    del opt["train"]["perceptual_opt"]  # SRGANModel runs without the perceptual loss (and without VGG)
    model, updated = train_one_step(opt)
    assert "l_g_percep" not in model.log_dict and updated["g"] and updated["d"]
    model.save(epoch=0, current_iter=1)
    models = Path(opt["path"]["models"])
    reloaded_opt = copy.deepcopy(opt)
    reloaded_opt["path"].update(
        pretrain_network_g=str(models / "net_g_1.pth"), pretrain_network_d=str(models / "net_d_1.pth")
    )

    torch.manual_seed(123)  # different random init: everything must come from the files
    reloaded = build_model(reloaded_opt)
    state = torch.load(Path(opt["path"]["training_states"]) / "1.state", weights_only=False)
    reloaded.resume_training(state)

    for name in ("net_g", "net_d"):
        original, restored = getattr(model, name).state_dict(), getattr(reloaded, name).state_dict()
        assert original.keys() == restored.keys()
        for key in original:
            torch.testing.assert_close(restored[key], original[key], rtol=0, atol=0, msg=f"{name}.{key}")
    torch.testing.assert_close(
        reloaded.optimizer_g.state_dict()["state"][0]["exp_avg"], model.optimizer_g.state_dict()["state"][0]["exp_avg"]
    )
    model.net_g.eval()
    reloaded.net_g.eval()
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.net_g(x), model.net_g(x), rtol=0, atol=0)
