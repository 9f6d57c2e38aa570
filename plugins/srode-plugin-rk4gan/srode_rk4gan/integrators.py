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

# The COGS181 report's code ties the tableau to shared learnable scalars: its RK2 trains ONE `one_half` for both
# weights (c_2 = 1 fixed); its RK4 sketch uses `one_half` (c_2, c_3), `one_third` (b_2, b_3) and `one_sixth`
# (b_1, b_4), c_4 = 1 fixed. A name is a shared parameter, a number a constant.
COGS181_TIED_TABLEAUS: dict[str, tuple[tuple[float | str, ...], tuple[float | str, ...]]] = {
    "euler": ((), (1.0,)),
    "rk2": ((1.0,), ("one_half", "one_half")),
    "rk4": (("one_half", "one_half", 1.0), ("one_sixth", "one_third", "one_third", "one_sixth")),
}
COGS181_INITIAL_VALUES = {"one_half": 0.5, "one_third": 1 / 3, "one_sixth": 1 / 6}
# cogs181: shared scalars as the report's code; per_entry: every c_i and b_i its own parameter; fixed: buffers
COEFFICIENT_MODES: tuple[str, ...] = ("cogs181", "per_entry", "fixed")


def check_integrator(integrator: str, option_key: str) -> None:
    """Raise OptionError naming `option_key` when `integrator` is not one of INTEGRATORS."""
    if integrator not in BUTCHER_TABLEAUS:
        raise OptionError(
            f"unknown integrator '{integrator}'; choose one of {', '.join(INTEGRATORS)} "
            "(euler = plain residual block, rk2 = Heun, rk4 = classic Runge-Kutta).",
            key=option_key,
        )


def check_coefficients(coefficients: str, option_key: str) -> None:
    """Raise OptionError naming `option_key` when `coefficients` is not one of COEFFICIENT_MODES."""
    if coefficients not in COEFFICIENT_MODES:
        raise OptionError(
            f"unknown coefficients '{coefficients}'; choose one of {', '.join(COEFFICIENT_MODES)} (cogs181 = shared "
            "one_half / one_third / one_sixth as the report's code, per_entry = one parameter per tableau entry, "
            "fixed = the classic tableau, not trained).",
            key=option_key,
        )


class RungeKuttaStep(nn.Module):
    """One explicit Runge-Kutta step y_{n+1} = y + sum_i b_i k_i with k_i = G(y + c_i k_{i-1}), k_1 = G(y).

    Args:
        residual: G, a shape-preserving module (B, C, H, W) -> (B, C, H, W); the same weights serve every stage.
        integrator: "euler" (1 stage), "rk2" (Heun, 2 stages) or "rk4" (classic, 4 stages).
        coefficients: "cogs181": the report code's shared scalars `one_half` (rk2: both weights; rk4: c_2, c_3),
            `one_third`, `one_sixth` (rk4 weights), trainable, the other entries constant; "per_entry": the
            offsets c_i and weights b_i are trainable parameters `stage_offsets`, `stage_weights` (Euler's empty
            offsets stay a buffer); "fixed": the classic tableau as saved buffers. All start at the classic values.
    """

    def __init__(self, residual: nn.Module, integrator: str = "rk4", coefficients: str = "cogs181") -> None:
        super().__init__()
        check_integrator(integrator, "integrator")
        check_coefficients(coefficients, "coefficients")
        self.residual = residual
        self.integrator = integrator
        self.coefficients = coefficients
        if coefficients == "cogs181":
            offsets, weights = COGS181_TIED_TABLEAUS[integrator]
            for name in dict.fromkeys(v for v in (*offsets, *weights) if isinstance(v, str)):
                self.register_parameter(name, nn.Parameter(torch.tensor([COGS181_INITIAL_VALUES[name]])))
            return
        offsets, weights = BUTCHER_TABLEAUS[integrator]
        offsets_tensor = torch.tensor(offsets, dtype=torch.float32)
        weights_tensor = torch.tensor(weights, dtype=torch.float32)
        # Euler has no offsets: an empty parameter would never get a gradient (DDP rejects unused parameters).
        for name, values in (("stage_offsets", offsets_tensor), ("stage_weights", weights_tensor)):
            if coefficients == "per_entry" and values.numel():
                self.register_parameter(name, nn.Parameter(values))
            else:
                self.register_buffer(name, values)

    @property
    def num_stages(self) -> int:
        """Evaluations of G per step (1, 2 or 4)."""
        return len(BUTCHER_TABLEAUS[self.integrator][1])

    def tableau(self) -> tuple[list[torch.Tensor | float], list[torch.Tensor | float]]:
        """The current offsets c_2..c_s and weights b_1..b_s (tensors where trainable or stored, else floats)."""
        if self.coefficients != "cogs181":
            return list(self.stage_offsets), list(self.stage_weights)
        offsets, weights = COGS181_TIED_TABLEAUS[self.integrator]
        return [self._entry(v) for v in offsets], [self._entry(v) for v in weights]

    def _entry(self, value: float | str) -> torch.Tensor | float:
        return getattr(self, value) if isinstance(value, str) else value

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W); keeps only y, the running sum and the latest stage alive."""
        offsets, weights = self.tableau()
        stage = self.residual(y)
        out = y + weights[0] * stage
        for index in range(1, self.num_stages):
            stage = self.residual(y + offsets[index - 1] * stage)
            out = out + weights[index] * stage
        return out

    def extra_repr(self) -> str:
        return f"integrator={self.integrator}, coefficients={self.coefficients}"
