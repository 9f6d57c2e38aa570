"""NODESRModel: NFE logging, the max-NFE policy, training on demo data and per-image test NFE.

Networks are small and randomly initialised (no pretrained weights); data is the core's embedded demo set.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from srode_plugins import api

SMALL_NETWORK = {"type": "NODESRNet", "num_feat": 8, "ode_layers": 2, "time_dependent": True, "augment_channels": 2,
                 "solver": "fixed_rk4", "step_size": 0.5, "backprop": "anode"}


def _model(tmp_path: Path, network: dict[str, Any] | None = None, train: dict[str, Any] | None = None) -> Any:
    api.get_component("archs", "NODESRNet")
    model_class = api.get_component("models", "NODESRModel")
    opt = {
        "name": "node_unit", "model_type": "NODESRModel", "scale": 4, "num_gpu": 0, "is_train": True,
        "dist": False, "rank": 0,
        "network_g": {**SMALL_NETWORK, **(network or {})},
        "path": {"experiments_root": str(tmp_path), "pretrain_network_g": None, "strict_load_g": True,
                 "resume_state": None},
        "train": {"ema_decay": 0, "optim_g": {"type": "Adam", "lr": 2e-3},
                  "scheduler": {"type": "MultiStepLR", "milestones": [10_000], "gamma": 0.5},
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}, **(train or {})},
    }
    return model_class(opt)


def _demo_batch() -> dict[str, torch.Tensor]:
    """One 16x16 LR / 64x64 HR crop of a demo validation photo, values in [0, 1]."""
    paths = api.demo_dataset(4)
    name = sorted(p.name for p in paths.val_hr.iterdir())[0]
    lr = np.asarray(Image.open(paths.val_lr / name).convert("RGB"), dtype=np.float32)[40:56, 40:56] / 255.0
    hr = np.asarray(Image.open(paths.val_hr / name).convert("RGB"), dtype=np.float32)[160:224, 160:224] / 255.0
    return {"lq": torch.from_numpy(lr).permute(2, 0, 1)[None].contiguous(),
            "gt": torch.from_numpy(hr).permute(2, 0, 1)[None].contiguous()}


def _l1(model: Any, batch: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        return float((model.net_g(batch["lq"]) - batch["gt"]).abs().mean())


def test_training_iterations_on_demo_data_lower_the_l1_loss_and_log_nfe(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model(tmp_path)
    batch = _demo_batch()
    before = _l1(model, batch)
    for iteration in range(1, 16):
        model.feed_data(batch)
        model.optimize_parameters(iteration)
    after = _l1(model, batch)
    assert after < 0.8 * before
    # 2 fixed RK4 steps x 4 stages forward; ANODE recomputes them once in backward
    assert model.log_dict["nfe_forward"] == 8.0
    assert model.log_dict["nfe_backward"] == 8.0
    rows = list(csv.DictReader((tmp_path / "nfe_train.csv").open()))
    assert len(rows) == 15 and rows[-1] == {"iter": "15", "nfe_forward": "8", "nfe_backward": "8", "skipped": "0"}


def test_batch_over_max_nfe_is_skipped_and_counted_then_training_stops_after_the_limit(tmp_path: Path) -> None:
    # dopri5 needs at least 8 evaluations (2 to pick the first step, 6 per step): max_nfe 3 always fires
    model = _model(tmp_path, network={"solver": "dopri5", "step_size": None, "backprop": "discrete", "max_nfe": 3},
                   train={"nfe_guard": {"on_exceed": "skip", "max_skipped_batches": 2}})
    batch = _demo_batch()
    weights_before = [p.detach().clone() for p in model.net_g.parameters()]
    for iteration in (1, 2):
        model.feed_data(batch)
        model.optimize_parameters(iteration)
        assert model.log_dict == {"nfe_skipped_batches": float(iteration)}
    assert all(torch.equal(a, b) for a, b in zip(weights_before, model.net_g.parameters(), strict=True))
    model.feed_data(batch)
    with pytest.raises(api.TrainingAborted, match="max_skipped_batches=2"):
        model.optimize_parameters(3)


def test_stop_policy_ends_training_at_the_first_batch_over_max_nfe(tmp_path: Path) -> None:
    model = _model(tmp_path, network={"solver": "dopri5", "step_size": None, "backprop": "adjoint", "max_nfe": 3},
                   train={"nfe_guard": {"on_exceed": "stop"}})
    model.feed_data(_demo_batch())
    with pytest.raises(api.TrainingAborted, match="on_exceed=stop"):
        model.optimize_parameters(1)


# Kaiming weights x 1000 make the ReLU-conv field grow like exp(1000 t): dopri5 halves its step until
# torchdiffeq raises "underflow in dt" after ~6400 evaluations, below the shipped max_nfe of 10000
EXPLODING_NETWORK = {"solver": "dopri5", "step_size": None, "backprop": "discrete", "rtol": 1e-3, "atol": 1e-3,
                     "ode_init_scale": 1000.0, "max_nfe": 10_000}


class SqrtDecay(torch.nn.Module):
    """dz/dt = -rate * sqrt(|z|): finite forward, but its derivative is infinite at z = 0, where the augmentation
    channels start, so the adjoint backward solve meets inf * 0 = NaN."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = torch.nn.Parameter(torch.tensor(rate))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -self.rate * z.abs().sqrt()


def _small_demo_batch() -> dict[str, torch.Tensor]:
    """A 4x4 LR / 16x16 HR corner of `_demo_batch`: an exploding solve takes thousands of evaluations."""
    batch = _demo_batch()
    return {"lq": batch["lq"][..., :4, :4].contiguous(), "gt": batch["gt"][..., :16, :16].contiguous()}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_exploding_ode_net_is_skipped_and_logged_like_max_nfe(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model(tmp_path, network=EXPLODING_NETWORK, train={"nfe_guard": {"on_exceed": "skip"}})
    weights_before = [p.detach().clone() for p in model.net_g.parameters()]
    records = _Records()
    logging.getLogger("basicsr").addHandler(records)
    try:
        model.feed_data(_small_demo_batch())
        model.optimize_parameters(1)
    finally:
        logging.getLogger("basicsr").removeHandler(records)
    assert model.log_dict == {"nfe_skipped_batches": 1.0}
    assert all(torch.equal(a, b) for a, b in zip(weights_before, model.net_g.parameters(), strict=True))
    assert any("underflow in dt" in message and "Batch skipped" in message for message in records.messages)
    rows = list(csv.DictReader((tmp_path / "nfe_train.csv").open()))
    assert rows[-1]["skipped"] == "1"


def test_exploding_ode_net_with_stop_policy_ends_training_with_the_reason(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model(tmp_path, network=EXPLODING_NETWORK, train={"nfe_guard": {"on_exceed": "stop"}})
    model.feed_data(_small_demo_batch())
    with pytest.raises(api.TrainingAborted, match=r"forward ODE solve broke down.*underflow in dt.*on_exceed=stop"):
        model.optimize_parameters(1)


def test_adjoint_backward_breakdown_takes_the_skip_path(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model(tmp_path, network={"solver": "dopri5", "step_size": None, "backprop": "adjoint", "rtol": 1e-3,
                                      "atol": 1e-3, "max_nfe": 10_000},
                   train={"nfe_guard": {"on_exceed": "skip", "max_skipped_batches": 0}})
    model.net_g.ode_blocks[0].odefunc.func = SqrtDecay(1.0)
    model.feed_data(_small_demo_batch())
    with pytest.raises(api.TrainingAborted, match=r"backward ODE solve broke down.*max_skipped_batches=0"):
        model.optimize_parameters(1)
    assert model.skipped_batches == 1


def test_unknown_nfe_guard_policy_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(api.OptionError, match="train.nfe_guard.on_exceed"):
        _model(tmp_path, train={"nfe_guard": {"on_exceed": "retry"}})


def test_basicsr_test_writes_the_forward_nfe_of_every_image(tmp_path: Path) -> None:
    from srode_plugins.engine.test import test as run_test

    torch.manual_seed(0)
    weights = tmp_path / "net_g.pth"
    model = _model(tmp_path)
    api.atomic_save({"params": model.net_g.state_dict()}, weights)
    option = {
        "name": "node_test", "model_type": "NODESRModel", "scale": 4, "num_gpu": 0, "manual_seed": 0,
        "datasets": {"val": {"name": "demo_val", "type": "PairedImageDataset", "dataroot_gt": "demo://val/HR",
                             "dataroot_lq": "demo://val/LR_bicubic/X4", "filename_tmpl": "{}",
                             "io_backend": {"type": "disk"}}},
        "network_g": SMALL_NETWORK,
        "path": {"pretrain_network_g": str(weights), "strict_load_g": True},
        "val": {"save_img": False, "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 4}}},
    }
    option_file = tmp_path / "node_test.yml"
    option_file.write_text(yaml.safe_dump(option))
    run_test(str(option_file), root=tmp_path)
    rows = list(csv.DictReader((tmp_path / "results" / "node_test" / "nfe_demo_val.csv").open()))
    demo_val = {p.stem for p in api.demo_dataset(4).val_hr.iterdir()}
    assert {row["image"] for row in rows} == demo_val
    assert all(row["nfe_forward"] == "8" for row in rows)


@pytest.mark.parametrize("precision", [[], ["train.amp=bf16", "train.channels_last=true"]], ids=["auto", "bf16"])
def test_fast_path_option_trains_with_20_evaluations_per_solve_in_auto_and_in_bf16_channels_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: list[str]
) -> None:
    from srode_plugins.engine.precision import CpuFacts, resolve
    from srode_plugins.engine.train import train

    monkeypatch.chdir(tmp_path)
    option = Path(__file__).parents[1] / "srode_node" / "options" / "NODE_fast_AugNODE_time_rk4_x4_BSD.yml"
    small = ["train.total_iter=2", "datasets.train.gt_size=32", "datasets.train.batch_size_per_gpu=2",
             "datasets.train.num_worker_per_gpu=0", "network_g.num_feat=8", "network_g.augment_channels=2",
             "val.val_freq=1000000", "logger.print_freq=1", *precision]
    summary = train(str(option), overrides=small, demo=True, root=tmp_path)
    assert summary.iter == 2 and summary.skipped_steps == 0
    net = summary.model.net_g
    expected = resolve("auto", "auto", CpuFacts.detect()) if not precision else resolve("bf16", True, CpuFacts.detect())
    assert net.conv_first.weight.is_contiguous(memory_format=torch.channels_last) is expected.channels_last
    assert net.nfe_forward == 5 * 4  # the final validation's solve: 5 classic RK4 steps of 4 stages
    log = next((tmp_path / "experiments").glob("*/train_*.log")).read_text()
    assert f"Precision: amp {expected.amp or 'fp32'}, channels_last {str(expected.channels_last).lower()}" in log
    assert "solver: fixed_rk4" in log
