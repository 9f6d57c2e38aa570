"""Explicit Runge-Kutta steps of size 1 around one shared-weight residual function G.

The residual block y -> y + G(y) is one Euler step of dy/dt = G(y); rk2 (Heun) and rk4 (classic) reuse
the same G at every stage, as in the COGS181 report and OISR.
"""

from __future__ import annotations

import torch
from torch import nn

from srode_plugins.api import OptionError

# integrator -> (stage offsets c_2..c_s, weights b_1..b_s); stage i evaluates k_i = G(y + c_i * k_{i-1}).
BUTCHER_TABLEAUS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "euler": ((), (1.0,)),
    "rk2": ((1.0,), (0.5, 0.5)),
    "rk4": ((0.5, 0.5, 1.0), (1 / 6, 1 / 3, 1 / 3, 1 / 6)),
}
INTEGRATORS: tuple[str, ...] = tuple(BUTCHER_TABLEAUS)


def check_integrator(integrator: str, option_key: str) -> None:
    """Raise OptionError naming `option_key` when `integrator` is not one of INTEGRATORS."""
    if integrator not in BUTCHER_TABLEAUS:
        raise OptionError(
            f"unknown integrator '{integrator}'; choose one of {', '.join(INTEGRATORS)} "
            "(euler = plain residual block, rk2 = Heun, rk4 = classic Runge-Kutta).",
            key=option_key,
        )


class RungeKuttaStep(nn.Module):
    """One explicit Runge-Kutta step y_{n+1} = y + sum_i b_i k_i with k_i = G(y + c_i k_{i-1}), k_1 = G(y).

    Args:
        residual: G, a shape-preserving module (B, C, H, W) -> (B, C, H, W); the same weights serve every stage.
        integrator: "euler" (1 stage), "rk2" (Heun, 2 stages) or "rk4" (classic, 4 stages).
        learnable_coefficients: when True the offsets c_i and weights b_i are trainable parameters initialised
            to the classic tableau; otherwise they are fixed buffers (still saved in the state dict).
            Euler's (empty) offsets are always a buffer.
    """

    def __init__(self, residual: nn.Module, integrator: str = "rk4", learnable_coefficients: bool = True) -> None:
        super().__init__()
        check_integrator(integrator, "integrator")
        self.residual = residual
        self.integrator = integrator
        offsets, weights = BUTCHER_TABLEAUS[integrator]
        offsets_tensor = torch.tensor(offsets, dtype=torch.float32)
        weights_tensor = torch.tensor(weights, dtype=torch.float32)
        # Euler has no offsets: an empty parameter would never get a gradient (DDP rejects unused parameters).
        for name, values in (("stage_offsets", offsets_tensor), ("stage_weights", weights_tensor)):
            if learnable_coefficients and values.numel():
                self.register_parameter(name, nn.Parameter(values))
            else:
                self.register_buffer(name, values)

    @property
    def num_stages(self) -> int:
        """Evaluations of G per step (1, 2 or 4)."""
        return self.stage_weights.numel()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W); keeps only y, the running sum and the latest stage alive."""
        stage = self.residual(y)
        out = y + self.stage_weights[0] * stage
        for index in range(1, self.num_stages):
            stage = self.residual(y + self.stage_offsets[index - 1] * stage)
            out = out + self.stage_weights[index] * stage
        return out

    def extra_repr(self) -> str:
        return f"integrator={self.integrator}, learnable_coefficients={isinstance(self.stage_weights, nn.Parameter)}"
