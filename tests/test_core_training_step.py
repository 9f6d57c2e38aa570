"""TrainingStep: the engine's step protocol (loss stages), the non-finite-loss guard, gradient clipping, fp16 loss
scaling and gradient accumulation; legacy models that step themselves; no process-wide patch of torch."""

from __future__ import annotations

import pytest
import torch

from srode_plugins.engine.step import LossStage, StageLosses, TrainingStep
from srode_plugins.errors import OptionError, TrainingAborted


class LinearModel:
    """The smallest model on the engine's protocol: one stage whose loss is a scaled mean squared error."""

    def __init__(self, losses: list[float], batch: slice | None = None) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1)
        self.optimizers = [self.optimizer]
        self.scales = iter(losses)
        self.inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
        self.targets = torch.randn(8, 1, generator=torch.Generator().manual_seed(2))
        self.batch = batch or slice(None)

    def loss(self) -> torch.Tensor:
        x, y = self.inputs[self.batch], self.targets[self.batch]
        return (self.net(x) - y).pow(2).mean() * next(self.scales)

    def training_stages(self, current_iter: int) -> list[LossStage]:
        return [LossStage(self.optimizer, lambda: StageLosses({"l_mse": self.loss()}))]


class LegacyLinearModel(LinearModel):
    """A BasicSR-style model without stages: optimize_parameters does zero_grad / backward / step itself."""

    training_stages = None  # type: ignore[assignment]

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer.zero_grad()
        loss = self.loss()
        loss.backward()
        self.optimizer.step()
        self.log_dict = {"l_mse": loss.item()}


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


def test_gradient_accumulation_over_two_half_batches_equals_one_step_over_the_whole_batch() -> None:
    whole = LinearModel([1.0])
    TrainingStep(whole, {}, torch.device("cpu")).run(whole, 1)
    halves = LinearModel([1.0, 1.0])
    step = TrainingStep(halves, {"accum_iter": 2}, torch.device("cpu"))
    halves.batch = slice(0, 4)
    before = params(halves)
    step.run(halves, 1)
    assert torch.equal(params(halves), before)  # no step after the first half
    halves.batch = slice(4, 8)
    step.run(halves, 2)
    # mean over 8 = average of the two means over 4: the same SGD update
    torch.testing.assert_close(params(halves), params(whole), rtol=1e-6, atol=1e-7)


def test_the_step_patches_nothing_in_torch() -> None:
    seen = []
    model = LinearModel([1.0])

    def compute() -> StageLosses:
        seen.append((torch.Tensor.backward, model.optimizer.step))
        return StageLosses({"l": model.loss()})

    model.training_stages = lambda it: [LossStage(model.optimizer, compute)]  # type: ignore[method-assign]
    backward, optimizer_step = torch.Tensor.backward, model.optimizer.step
    TrainingStep(model, {"amp": "fp16", "grad_clip": 1.0}, torch.device("cpu")).run(model, 1)
    assert seen == [(backward, optimizer_step)]
    assert torch.Tensor.backward is backward and model.optimizer.step == optimizer_step


def test_a_legacy_model_steps_itself_and_its_nonfinite_losses_are_counted() -> None:
    model = LegacyLinearModel([1.0, float("nan")])
    step = TrainingStep(model, {"amp": "bf16"}, torch.device("cpu"))
    before = params(model)
    assert step.run(model, 1) is True and not torch.equal(params(model), before)
    assert step.run(model, 2) is False and step.skipped_total == 1


@pytest.mark.parametrize(("option", "key"), [({"amp": "fp16"}, "train.amp"), ({"grad_clip": 1.0}, "train.grad_clip"),
                                             ({"accum_iter": 4}, "train.accum_iter")])
def test_options_a_legacy_model_cannot_honour_are_refused_naming_the_key(option: dict, key: str) -> None:
    with pytest.raises(OptionError, match=rf"option '{key}'.*implement training_stages"):
        TrainingStep(LegacyLinearModel([1.0]), option, torch.device("cpu"))
