"""`coefficients: cogs181` trains the tableau as the COGS181 report's code (GitHub Rabona17/Dual_attention_GAN_For_SISR,
`model.py`, class `RDB`) does.

Second implementation written here from the code's formulas, not from srode:
- RK2 (what the code runs): G1 = G(y); G2 = G(y + G1); out = y + one_half * (G1 + G2), ONE learnable `one_half` = 0.5
- RK4 (the code's commented sketch): k1 = G(y), k2 = G(y + one_half k1), k3 = G(y + one_half k2), k4 = G(y + k3);
  out = y + one_sixth (k1 + k4) + one_third (k2 + k3), learnable `one_half`, `one_third`, `one_sixth`
- no RK (the code's branch without attention): out = y + G(y), nothing learnable
"""

from __future__ import annotations

import pytest
import torch
from srode_rk4gan.integrators import RungeKuttaStep
from torch import nn


class ReportRK2(nn.Module):
    def __init__(self, residual: nn.Module) -> None:
        super().__init__()
        self.residual = residual
        self.one_half = nn.Parameter(torch.tensor([0.5], dtype=torch.float64))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        g_yn = self.residual(y)
        g_yn_1 = self.residual(y + g_yn)
        return y + self.one_half * (g_yn + g_yn_1)


class ReportRK4(nn.Module):
    def __init__(self, residual: nn.Module) -> None:
        super().__init__()
        self.residual = residual
        self.one_half = nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
        self.one_third = nn.Parameter(torch.tensor([1 / 3], dtype=torch.float64))
        self.one_sixth = nn.Parameter(torch.tensor([1 / 6], dtype=torch.float64))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        k1 = self.residual(y)
        k2 = self.residual(y + self.one_half * k1)
        k3 = self.residual(y + self.one_half * k2)
        k4 = self.residual(y + k3)
        return y + self.one_sixth * k1 + self.one_third * k2 + self.one_third * k3 + self.one_sixth * k4


REPORT = {"rk2": ReportRK2, "rk4": ReportRK4}


def _residual() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh()).double()


def _pair(integrator: str) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ours = RungeKuttaStep(_residual(), integrator, coefficients="cogs181").double()
    reference = REPORT[integrator](_residual())
    reference.load_state_dict(ours.state_dict())  # same names: residual.*, one_half, ...
    return ours, reference


@pytest.mark.parametrize(("integrator", "names"), [("rk2", {"one_half"}),
                                                   ("rk4", {"one_half", "one_third", "one_sixth"}),
                                                   ("euler", set())])
def test_cogs181_trains_only_the_reports_shared_scalars(integrator: str, names: set[str]) -> None:
    step = RungeKuttaStep(nn.Conv2d(3, 3, 1), integrator, coefficients="cogs181")
    scalars = {name: p for name, p in step.named_parameters() if not name.startswith("residual.")}
    assert set(scalars) == names
    assert all(p.shape == (1,) for p in scalars.values())


@pytest.mark.parametrize("integrator", ["rk2", "rk4"])
def test_cogs181_step_and_its_training_equal_the_reports_formula(integrator: str) -> None:
    ours, reference = _pair(integrator)
    y = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(y), reference(y), rtol=0, atol=1e-12)

    optimizers = [torch.optim.Adam(net.parameters(), lr=0.05) for net in (ours, reference)]
    for _ in range(5):
        target = torch.randn_like(y)
        for net, optimizer in zip((ours, reference), optimizers, strict=True):
            optimizer.zero_grad()
            (net(y) - target).square().mean().backward()
            optimizer.step()
    assert ours.one_half.item() != 0.5
    torch.testing.assert_close(ours(y), reference(y), rtol=0, atol=1e-10)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=0, atol=1e-10)


def test_cogs181_euler_is_the_plain_residual_block() -> None:
    torch.manual_seed(0)
    residual = _residual()
    step = RungeKuttaStep(residual, "euler", coefficients="cogs181")
    y = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(step(y), y + residual(y), rtol=0, atol=0)


def test_per_entry_rk2_is_another_model_in_training_same_at_load() -> None:
    torch.manual_seed(0)
    tied = RungeKuttaStep(_residual(), "rk2", coefficients="cogs181").double()
    untied = RungeKuttaStep(_residual(), "rk2", coefficients="per_entry").double()
    untied.residual.load_state_dict(tied.residual.state_dict())
    y = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(untied(y), tied(y), rtol=0, atol=1e-12)

    untied(y).square().mean().backward()
    grad_b1, grad_b2 = untied.stage_weights.grad
    assert untied.stage_offsets.grad is not None and untied.stage_offsets.grad.abs().item() > 0
    assert grad_b1 != grad_b2  # the two weights drift apart; the report keeps them equal
