"""Fixed-step solvers: convergence order, NFE per step, and classic RK4 versus torchdiffeq's 3/8 rule."""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq
from srode_node.odeblock import ODEBlock
from srode_node.solvers import FIXED_STEP_SOLVERS, integrate_fixed_step, num_fixed_steps
from torch import Tensor, nn


def _linear_rhs(t: Tensor, z: Tensor) -> Tensor:
    # dz/dt = -z + t, solution z(t) = t - 1 + (z0 + 1) exp(-t)
    return -z + t


def _linear_exact(z0: float, t: float) -> float:
    return t - 1 + (z0 + 1) * math.exp(-t)


@pytest.mark.parametrize(("solver", "order"), [("fixed_euler", 1), ("fixed_midpoint", 2), ("fixed_rk4", 4)])
def test_global_error_shrinks_at_the_method_order_when_the_step_halves(solver: str, order: int) -> None:
    z0 = torch.tensor([0.5], dtype=torch.float64)
    tableau = FIXED_STEP_SOLVERS[solver]
    errors = []
    for step in (0.1, 0.05, 0.025):
        z1 = integrate_fixed_step(_linear_rhs, z0, 0.0, 2.0, step, tableau)
        errors.append(abs(float(z1) - _linear_exact(0.5, 2.0)))
    observed_orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert tableau.order == order
    for observed in observed_orders:
        assert observed == pytest.approx(order, abs=0.15)


class _Identity(nn.Module):
    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return z


@pytest.mark.parametrize(("solver", "stages"), [("fixed_euler", 1), ("fixed_midpoint", 2), ("fixed_rk4", 4)])
def test_nfe_per_step_equals_the_number_of_stages(solver: str, stages: int) -> None:
    block = ODEBlock(_Identity(), solver=solver, step_size=0.25, integration_time=1.0)
    block(torch.ones(1, 1, 2, 2))
    assert block.nfe_forward == 4 * stages
    assert FIXED_STEP_SOLVERS[solver].stages == stages


def test_fixed_rk4_is_the_classic_rule_and_torchdiffeq_rk4_is_the_three_eighths_rule() -> None:
    # On the quadrature dz/dt = t^4 with one step of size 1, classic RK4 reduces to Simpson's rule
    # (1/6)(0 + 4 (1/2)^4 + 1) = 5/24 and Kutta's 3/8 rule to (1/8)(0 + 3 (1/3)^4 + 3 (2/3)^4 + 1) = 11/54.
    def quartic(t: Tensor, z: Tensor) -> Tensor:
        return torch.ones_like(z) * t**4

    z0 = torch.zeros(1, dtype=torch.float64)
    classic = integrate_fixed_step(quartic, z0, 0.0, 1.0, 1.0, FIXED_STEP_SOLVERS["fixed_rk4"])
    times = torch.tensor([0.0, 1.0], dtype=torch.float64)
    three_eighths = torchdiffeq.odeint(quartic, z0, times, method="rk4", options={"step_size": 1.0})[-1]
    assert float(classic) == pytest.approx(5 / 24, rel=1e-12)
    assert float(three_eighths) == pytest.approx(11 / 54, rel=1e-12)


def test_step_count_covers_the_interval_with_equal_steps() -> None:
    assert num_fixed_steps(0.0, 1.0, 0.2) == 5
    assert num_fixed_steps(0.0, 1.0, 0.3) == 4
    assert num_fixed_steps(0.0, 0.1, 1.0) == 1


def test_adaptive_torchdiffeq_solver_matches_the_closed_form() -> None:
    class Linear(nn.Module):
        def forward(self, t: Tensor, z: Tensor) -> Tensor:
            return _linear_rhs(t, z)

    block = ODEBlock(Linear(), solver="dopri5", rtol=1e-9, atol=1e-9, integration_time=2.0)
    z1 = block(torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64))
    assert float(z1) == pytest.approx(_linear_exact(0.5, 2.0), abs=1e-7)
    assert block.nfe_forward > 0
