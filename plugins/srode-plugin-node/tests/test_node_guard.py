"""The max-NFE guard turns a runaway solve into MaxNFEExceeded, in the forward and in the backward pass."""

from __future__ import annotations

import pytest
import torch
from srode_node.errors import MaxNFEExceeded
from srode_node.odeblock import ODEBlock
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
