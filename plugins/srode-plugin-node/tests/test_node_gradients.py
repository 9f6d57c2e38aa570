"""Discrete, adjoint and ANODE backpropagation give the same gradients on a small random NODESRNet (float64).

Random initialisation (no pretrained weights) on a 4x4 image, so the solves are cheap.
"""

from __future__ import annotations

import pytest
import torch
from srode_node.archs import NODESRNet

SMALL_NET = {"num_feat": 4, "ode_layers": 2, "time_dependent": True, "augment_channels": 1, "ode_init_scale": 0.5}


def _gradient(state_dict: dict, image: torch.Tensor, **ode_options: object) -> tuple[torch.Tensor, NODESRNet]:
    net = NODESRNet(**SMALL_NET, **ode_options).double()
    net.load_state_dict(state_dict)
    loss = (net(image) ** 2).mean()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()]), net


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def setup() -> tuple[dict, torch.Tensor]:
    torch.manual_seed(0)
    reference = NODESRNet(**SMALL_NET).double()
    return reference.state_dict(), torch.rand(1, 3, 4, 4, dtype=torch.float64)


def test_anode_gradient_equals_discrete_backprop_through_the_same_fixed_steps(setup: tuple) -> None:
    state_dict, image = setup
    discrete, _ = _gradient(state_dict, image, solver="fixed_rk4", step_size=0.2, backprop="discrete")
    anode, net = _gradient(state_dict, image, solver="fixed_rk4", step_size=0.2, backprop="anode")
    # same arithmetic replayed from z0: equal up to float64 rounding
    assert _relative_error(anode, discrete) < 1e-10
    assert net.nfe_forward == 20 and net.nfe_backward == 20  # 5 steps x 4 stages, recomputed once


def test_adjoint_and_anode_gradients_agree_with_discrete_dopri5(setup: tuple) -> None:
    # All three approximate the gradient of the exact flow. At rtol = atol = 1e-6 dopri5 takes ~7 accepted steps,
    # so the forward and adjoint solves each carry a relative error of order 1e-5; classic RK4 with h = 0.05 has
    # global error O(h^4) ~ 6e-6. Observed: 3.5e-5 (adjoint, with or without seminorm) and 2.3e-5 (anode); the
    # bound 2e-4 leaves a factor ~6 for BLAS / summation-order differences across machines.
    state_dict, image = setup
    discrete, _ = _gradient(state_dict, image, solver="dopri5", rtol=1e-6, atol=1e-6)
    adjoint, adjoint_net = _gradient(state_dict, image, solver="dopri5", rtol=1e-6, atol=1e-6, backprop="adjoint")
    anode, _ = _gradient(state_dict, image, solver="fixed_rk4", step_size=0.05, backprop="anode")
    assert _relative_error(adjoint, discrete) < 2e-4
    assert _relative_error(anode, discrete) < 2e-4
    assert adjoint_net.nfe_backward > 0


def test_discrete_backprop_makes_no_backward_function_evaluations(setup: tuple) -> None:
    state_dict, image = setup
    _, net = _gradient(state_dict, image, solver="fixed_midpoint", step_size=0.5)
    assert net.nfe_forward == 4
    assert net.nfe_backward == 0


@pytest.mark.slow
def test_adjoint_with_seminorm_agrees_with_discrete_dopri5(setup: tuple) -> None:
    # same error budget as above; the seminorm only leaves the parameter-gradient channels out of step control
    state_dict, image = setup
    discrete, _ = _gradient(state_dict, image, solver="dopri5", rtol=1e-6, atol=1e-6)
    seminorm, _ = _gradient(state_dict, image, solver="dopri5", rtol=1e-6, atol=1e-6, backprop="adjoint",
                            adjoint_seminorm=True)
    assert _relative_error(seminorm, discrete) < 2e-4
