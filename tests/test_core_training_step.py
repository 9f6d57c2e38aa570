"""TrainingStep: the non-finite-loss guard, gradient clipping and fp16 loss scaling around any model."""

from __future__ import annotations

import pytest
import torch

from srode_plugins.engine.step import TrainingStep
from srode_plugins.errors import OptionError, TrainingAborted


class LinearModel:
    """The smallest BasicSR-like model: optimize_parameters does zero_grad / backward / step itself."""

    def __init__(self, losses: list[float]) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1)
        self.optimizers = [self.optimizer]
        self.scales = iter(losses)
        self.inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
        self.targets = torch.randn(8, 1, generator=torch.Generator().manual_seed(2))

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer.zero_grad()
        loss = (self.net(self.inputs) - self.targets).pow(2).mean() * next(self.scales)
        loss.backward()
        self.optimizer.step()


def params(model: LinearModel) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.net.parameters()]).clone()


def test_a_nan_loss_skips_the_step_and_leaves_the_weights_unchanged() -> None:
    model = LinearModel([1.0, float("nan"), 1.0])
    step = TrainingStep(model, {}, torch.device("cpu"))
    assert step.run(model, 1) is True
    before = params(model)
    assert step.run(model, 2) is False
    assert torch.equal(params(model), before)
    assert step.run(model, 3) is True and not torch.equal(params(model), before)
    assert step.skipped_total == 1 and step.skipped_in_a_row == 0


def test_training_stops_with_a_message_after_max_nonfinite_in_a_row() -> None:
    model = LinearModel([float("inf")] * 3)
    step = TrainingStep(model, {"max_nonfinite": 3}, torch.device("cpu"))
    step.run(model, 1)
    step.run(model, 2)
    with pytest.raises(TrainingAborted, match="3 iterations in a row.*train.max_nonfinite"):
        step.run(model, 3)


def test_grad_clip_bounds_the_update_to_lr_times_max_norm() -> None:
    model = LinearModel([1e6])
    before = params(model)
    TrainingStep(model, {"grad_clip": 0.5}, torch.device("cpu")).run(model, 1)
    # SGD: the update is lr * clipped gradient, whose L2 norm is at most max_norm.
    assert torch.linalg.vector_norm(params(model) - before).item() == pytest.approx(0.1 * 0.5, rel=1e-4)


def test_fp16_loss_scaling_gives_the_same_update_as_fp32() -> None:
    reference, scaled = LinearModel([1.0]), LinearModel([1.0])
    TrainingStep(reference, {}, torch.device("cpu")).run(reference, 1)
    step = TrainingStep(scaled, {"amp": "fp16", "amp_init_scale": 256}, torch.device("cpu"))
    step.run(scaled, 1)
    assert step.scaler.get_scale() == 256  # the loss was scaled before backward, and no overflow happened
    torch.testing.assert_close(params(scaled), params(reference), rtol=2e-3, atol=2e-3)


def test_unknown_amp_value_names_the_option() -> None:
    with pytest.raises(OptionError, match="train.amp"):
        TrainingStep(LinearModel([1.0]), {"amp": "int8"}, torch.device("cpu"))
