"""The guard turns a runaway solve into MaxNFEExceeded, in the forward and in the backward pass, and every
torchdiffeq failure (dt underflow, non-finite state, step limit) into SolverBreakdown; other errors pass through."""

from __future__ import annotations

import pytest
import torch
import torchdiffeq
from srode_node.archs import ConvODEFunc
from srode_node.errors import MaxNFEExceeded, SolverBreakdown
from srode_node.odeblock import ODEBlock, as_solver_breakdown
from torch import Tensor, nn


class StiffDecay(nn.Module):
    """dz/dt = -rate * z: explicit adaptive solvers need steps of about 3 / rate to stay stable."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(rate))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return -self.rate * z


def test_guard_fires_in_the_forward_solve_of_a_stiff_ode() -> None:
    # stability alone needs ~rate/3 = 3000 dopri5 steps (x6 evaluations); the guard stops at 200
    block = ODEBlock(StiffDecay(1e4), solver="dopri5", rtol=1e-6, atol=1e-6, max_nfe=200)
    with pytest.raises(MaxNFEExceeded) as caught:
        block(torch.ones(1, 1, 2, 2))
    assert caught.value.phase == "forward"
    assert caught.value.limit == 200
    assert block.nfe_forward == 201
    assert "network_g.max_nfe" in str(caught.value)


def test_guard_fires_in_the_adjoint_backward_solve() -> None:
    z0 = torch.ones(1, 1, 2, 2, requires_grad=True)
    unguarded = ODEBlock(StiffDecay(50.0), solver="dopri5", rtol=1e-6, atol=1e-6, backprop="adjoint")
    unguarded(z0).sum().backward()
    forward_nfe, backward_nfe = unguarded.nfe_forward, unguarded.nfe_backward
    assert backward_nfe > forward_nfe  # the adjoint system (state, adjoint, parameter gradient) is harder

    guarded = ODEBlock(StiffDecay(50.0), solver="dopri5", rtol=1e-6, atol=1e-6, backprop="adjoint",
                       max_nfe=forward_nfe)
    out = guarded(z0)  # the forward solve fits exactly
    with pytest.raises(MaxNFEExceeded) as caught:
        out.sum().backward()
    assert caught.value.phase == "backward"
    assert guarded.nfe_backward == forward_nfe + 1


def test_guard_counts_anode_recomputation_as_backward() -> None:
    block = ODEBlock(StiffDecay(1.0), solver="fixed_rk4", step_size=0.25, backprop="anode", max_nfe=16)
    z0 = torch.ones(1, 1, 2, 2, requires_grad=True)
    block(z0).sum().backward()
    assert (block.nfe_forward, block.nfe_backward) == (16, 16)


class SqrtDecay(nn.Module):
    """dz/dt = -sqrt(|z|): finite forward; its derivative is infinite at z = 0, so the adjoint meets NaN there."""

    def __init__(self) -> None:
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(1.0))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return -self.rate * z.abs().sqrt()


class Broken(nn.Module):
    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        raise RuntimeError("shape mismatch in the user's vector field")


def test_exploding_conv_field_raises_solver_breakdown_before_max_nfe() -> None:
    torch.manual_seed(0)
    # Kaiming x 1000: the ReLU-conv field grows like exp(1000 t); dopri5 shrinks its step until torchdiffeq
    # asserts "underflow in dt", which used to escape the guard as a bare AssertionError
    block = ODEBlock(ConvODEFunc(4, 2, time_dependent=True, init_scale=1000.0), solver="dopri5", rtol=1e-3,
                     atol=1e-3, max_nfe=10_000)
    with pytest.raises(SolverBreakdown, match="forward ODE solve broke down.*underflow in dt") as caught:
        block(torch.rand(1, 4, 4, 4))
    assert isinstance(caught.value.__cause__, AssertionError)
    assert caught.value.phase == "forward"
    assert 0 < caught.value.nfe == block.nfe_forward < 10_000


def test_non_finite_initial_state_raises_solver_breakdown() -> None:
    block = ODEBlock(StiffDecay(1.0), solver="dopri5", max_nfe=10_000)
    with pytest.raises(SolverBreakdown):
        block(torch.tensor([[[[float("nan"), 1.0]]]]))


def test_adjoint_backward_non_finite_state_is_recognised_as_a_breakdown() -> None:
    block = ODEBlock(SqrtDecay(), solver="dopri5", rtol=1e-3, atol=1e-3, backprop="adjoint", max_nfe=10_000)
    z0 = torch.tensor([[[[0.0, 1.0]]]], requires_grad=True)
    with pytest.raises(AssertionError) as caught:
        block(z0).sum().backward()
    breakdown = as_solver_breakdown(caught.value, "backward", block.nfe_backward)
    assert isinstance(breakdown, SolverBreakdown)
    assert breakdown.phase == "backward" and "non-finite values in state" in str(breakdown)


def test_torchdiffeq_step_limit_is_recognised_as_a_breakdown() -> None:
    with pytest.raises(AssertionError) as caught:
        torchdiffeq.odeint(StiffDecay(1e3), torch.ones(1, 1, 1, 1), torch.tensor([0.0, 1.0]), method="dopri5",
                           options={"max_num_steps": 3})
    assert "max_num_steps exceeded" in str(as_solver_breakdown(caught.value, "forward", 0))


def test_other_errors_pass_through_unchanged() -> None:
    with pytest.raises(RuntimeError, match="shape mismatch"):
        ODEBlock(Broken(), solver="dopri5")(torch.ones(1, 1, 2, 2))
    assert as_solver_breakdown(AssertionError("an unrelated check"), "forward", 0) is None
    assert as_solver_breakdown(MaxNFEExceeded("forward", 3), "forward", 0) is None
