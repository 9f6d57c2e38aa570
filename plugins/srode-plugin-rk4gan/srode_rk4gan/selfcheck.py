"""`basicsr plugins check srode-plugin-rk4gan`: a few seconds of CPU checks of the plugin's components."""

from __future__ import annotations

from srode_plugins.api import get_component  # applies the BasicSR compat patches: import before basicsr

# isort: split
import math

import torch
from torch import nn

from srode_rk4gan.attention import NonLocalAttention
from srode_rk4gan.integrators import RungeKuttaStep


class SelfCheckError(RuntimeError):
    """A component of srode-plugin-rk4gan does not behave as documented."""


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise SelfCheckError(f"srode-plugin-rk4gan self-check failed: {what}")


def _check_rk4_on_linear_ode() -> None:
    torch.manual_seed(0)
    matrix = 0.3 * torch.randn(4, 4, dtype=torch.float64)
    residual = nn.Conv2d(4, 4, 1, bias=False).double()
    with torch.no_grad():
        residual.weight.copy_(matrix[:, :, None, None])
    step = RungeKuttaStep(residual, "rk4", coefficients="fixed").double()
    y = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    taylor = sum(torch.linalg.matrix_power(matrix, k) / math.factorial(k) for k in range(5))
    expected = torch.einsum("ij,bjhw->bihw", taylor, y)
    _check(torch.allclose(step(y), expected, rtol=1e-6, atol=1e-7), "rk4 step of dy/dt = Ay != classic RK4 formula")


def _check_nonlocal_paths_agree() -> None:
    torch.manual_seed(0)
    sdpa = NonLocalAttention(8, "embedded", 4, "sdpa").double()
    naive = NonLocalAttention(8, "embedded", 4, "naive").double()
    naive.load_state_dict(sdpa.state_dict())
    x = torch.randn(1, 8, 6, 7, dtype=torch.float64)
    _check(torch.allclose(sdpa(x), naive(x)), "memory-efficient non-local != naive softmax")


def _check_shapes() -> None:
    generator_class = get_component("archs", "RK4DualAttnRDN")
    discriminator_class = get_component("archs", "SRGANDiscriminator")
    for scale in (2, 3, 4):
        net = generator_class(upscale=scale, num_feat=8, num_block=1, num_layer=2, growth_rate=4, se_reduction=4)
        shape = tuple(net(torch.rand(1, 3, 6, 5)).shape)
        _check(shape == (1, 3, 6 * scale, 5 * scale), f"x{scale} generator output shape {shape}")
    for head in ("dense", "pooled"):
        shape = tuple(discriminator_class(num_feat=8, head=head, input_size=96)(torch.rand(2, 3, 96, 96)).shape)
        _check(shape == (2, 1), f"discriminator ({head} head) output shape {shape}")


def run() -> str:
    """Run the checks; raise SelfCheckError on the first failure, return a one-line summary."""
    with torch.no_grad():
        _check_rk4_on_linear_ode()
        _check_nonlocal_paths_agree()
        _check_shapes()
    return "rk4 step == classic formula; sdpa non-local == naive; G x2/x3/x4 and D (dense, pooled) shapes ok"
