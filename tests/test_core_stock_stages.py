"""The engine's stages for stock BasicSR models compute what their own `optimize_parameters` computes.

Two copies of each model start from the same weights and batch; one runs BasicSR's `optimize_parameters`, the
other the engine's `TrainingStep` with the adapter's stages. After each of three iterations the generator, the
discriminator and the EMA generator must agree, and so must the logged losses. BasicSR itself is the oracle.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

# isort: split
from basicsr.models import build_model

from srode_plugins.compat_stages import stock_stages
from srode_plugins.engine.step import TrainingStep

TINY_G = {"type": "MSRResNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "upscale": 2}
TINY_D = {"type": "VGGStyleDiscriminator", "num_in_ch": 3, "num_feat": 4, "input_size": 128}


def model_option(model_type: str, gan: bool, **train_extra: Any) -> dict[str, Any]:
    train = {"ema_decay": 0.9, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"},
             "scheduler": {"type": "MultiStepLR", "milestones": [100], "gamma": 0.5}, **train_extra}
    if gan:
        train |= {"optim_d": {"type": "Adam", "lr": 1e-3}, "net_d_iters": 1, "net_d_init_iters": 1,
                  "gan_opt": {"type": "GANLoss", "gan_type": "vanilla", "loss_weight": 0.1}}
    option = {"name": "stages", "model_type": model_type, "scale": 2, "num_gpu": 0, "is_train": True, "dist": False,
              "rank": 0, "world_size": 1, "network_g": dict(TINY_G), "train": train,
              "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None}}
    if gan:
        option["network_d"] = dict(TINY_D)
    return option


def batch(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"lq": torch.rand(2, 3, 64, 64, generator=generator), "gt": torch.rand(2, 3, 128, 128, generator=generator)}


def set_batch(model: Any, data: dict[str, torch.Tensor]) -> None:
    model.lq, model.gt = data["lq"].clone(), data["gt"].clone()
    if hasattr(model, "usm_sharpener"):
        model.gt_usm = model.usm_sharpener(model.gt)


def weights(model: Any) -> dict[str, torch.Tensor]:
    nets = {name: getattr(model, name) for name in ("net_g", "net_d", "net_g_ema") if hasattr(model, name)}
    return {f"{n}.{k}": v.detach().clone() for n, net in nets.items() for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    ("model_type", "gan", "extra"),
    [("SRModel", False, {}),
     ("SRGANModel", True, {}),
     ("ESRGANModel", True, {}),
     ("RealESRGANModel", True, {"l1_gt_usm": True, "percep_gt_usm": False, "gan_gt_usm": False})],
)
def test_adapter_stages_match_stock_optimize_parameters(model_type: str, gan: bool, extra: dict) -> None:
    option = model_option(model_type, gan)
    option.update(extra)
    if model_type == "RealESRGANModel":
        option.update(queue_size=4, high_order_degradation=False)
    torch.manual_seed(0)
    stock = build_model(copy.deepcopy(option))
    ours = copy.deepcopy(stock)
    assert stock_stages(ours) is not None
    step = TrainingStep(ours, option["train"], torch.device("cpu"))
    for it in (1, 2, 3):  # iteration 1 is discriminator-only (net_d_init_iters: 1)
        data = batch(it)
        set_batch(stock, data)
        set_batch(ours, data)
        stock.optimize_parameters(it)
        assert step.run(ours, it) is True
        expected, got = weights(stock), weights(ours)
        assert expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=f"iter {it}: {name}")
        assert set(ours.log_dict) == set(stock.log_dict)
        for key, value in stock.log_dict.items():
            assert ours.log_dict[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_a_subclass_with_its_own_optimize_parameters_is_not_adapted() -> None:
    from basicsr.models.sr_model import SRModel

    class OwnStep(SRModel):
        def optimize_parameters(self, current_iter: int) -> None:  # pragma: no cover - never called here
            raise AssertionError

    torch.manual_seed(0)
    model = OwnStep(model_option("SRModel", False))
    assert stock_stages(model) is None
