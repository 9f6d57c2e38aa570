"""RungeKuttaStep against the closed-form step of a linear ODE dy/dt = A y (h = 1)."""

from __future__ import annotations

import math

import pytest
import torch
from srode_rk4gan.integrators import RungeKuttaStep
from torch import nn

from srode_plugins.errors import OptionError

# For linear G(y) = A y one explicit RK step of order p is the Taylor polynomial sum_{k<=p} A^k / k!.
TAYLOR_ORDER = {"euler": 1, "rk2": 2, "rk4": 4}


def linear_residual(matrix: torch.Tensor) -> nn.Conv2d:
    """G(y) = A y over the channel axis, as a bias-free 1x1 convolution."""
    conv = nn.Conv2d(matrix.shape[0], matrix.shape[0], 1, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(matrix[:, :, None, None])
    return conv


def classic_step_matrix(matrix: torch.Tensor, order: int) -> torch.Tensor:
    return sum(torch.linalg.matrix_power(matrix, k) / math.factorial(k) for k in range(order + 1))


@pytest.mark.parametrize("coefficients", ["fixed", "per_entry", "cogs181"])
@pytest.mark.parametrize("integrator", ["euler", "rk2", "rk4"])
def test_step_of_linear_residual_equals_classic_formula(integrator: str, coefficients: str) -> None:
    torch.manual_seed(0)
    channels = 5
    matrix = 0.4 * torch.randn(channels, channels, dtype=torch.float64)
    step = RungeKuttaStep(linear_residual(matrix), integrator, coefficients).double()
    y = torch.randn(2, channels, 3, 4, dtype=torch.float64)

    expected = torch.einsum("ij,bjhw->bihw", classic_step_matrix(matrix, TAYLOR_ORDER[integrator]), y)

    # the tableau is stored in float32 (1/6, 1/3 round at ~1e-8), everything else is float64
    torch.testing.assert_close(step(y), expected, rtol=1e-6, atol=1e-7)


def test_rk4_step_matches_the_textbook_stage_formula() -> None:
    torch.manual_seed(1)
    residual = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh()).double()
    step = RungeKuttaStep(residual, "rk4", coefficients="fixed").double()
    y = torch.randn(1, 3, 6, 6, dtype=torch.float64)

    k1 = residual(y)
    k2 = residual(y + k1 / 2)
    k3 = residual(y + k2 / 2)
    k4 = residual(y + k3)

    torch.testing.assert_close(step(y), y + (k1 + 2 * k2 + 2 * k3 + k4) / 6)


def test_every_stage_reuses_the_same_residual_weights() -> None:
    residual = nn.Conv2d(4, 4, 1)
    step = RungeKuttaStep(residual, "rk4")
    calls = []
    residual.register_forward_hook(lambda module, inputs, output: calls.append(module))

    step(torch.randn(1, 4, 2, 2))

    assert len(calls) == 4 and all(module is residual for module in calls)
    assert sum(p.numel() for p in step.residual.parameters()) == 4 * 4 + 4


def test_learnable_coefficients_are_trainable_parameters_that_receive_gradients() -> None:
    step = RungeKuttaStep(nn.Conv2d(3, 3, 3, padding=1), "rk4", coefficients="per_entry")
    names = {name for name, _ in step.named_parameters()}
    assert {"stage_offsets", "stage_weights"} <= names

    step(torch.randn(2, 3, 5, 5)).square().mean().backward()

    assert step.stage_offsets.grad is not None and step.stage_offsets.grad.abs().sum() > 0
    assert step.stage_weights.grad is not None and step.stage_weights.grad.abs().sum() > 0


def test_learnable_euler_step_has_no_parameter_without_gradient() -> None:
    step = RungeKuttaStep(nn.Conv2d(3, 3, 1), "euler", coefficients="per_entry")

    step(torch.randn(1, 3, 4, 4)).sum().backward()

    assert {name for name, _ in step.named_parameters()} == {"residual.weight", "residual.bias", "stage_weights"}
    assert all(p.grad is not None for p in step.parameters())


def test_fixed_coefficients_are_saved_buffers_not_parameters() -> None:
    step = RungeKuttaStep(nn.Conv2d(3, 3, 1), "rk2", coefficients="fixed")

    assert {name for name, _ in step.named_parameters()} == {"residual.weight", "residual.bias"}
    torch.testing.assert_close(step.state_dict()["stage_weights"], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(step.state_dict()["stage_offsets"], torch.tensor([1.0]))


def test_unknown_integrator_names_the_option_and_the_choices() -> None:
    with pytest.raises(OptionError, match=r"integrator.*'rk3'.*euler, rk2, rk4"):
        RungeKuttaStep(nn.Identity(), "rk3")
