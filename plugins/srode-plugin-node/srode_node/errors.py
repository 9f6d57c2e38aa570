"""The Neural-ODE family's own error."""

from __future__ import annotations

from srode_plugins.api import TrainingAborted


class MaxNFEExceeded(TrainingAborted):
    """A solve needed more vector-field evaluations than `network_g.max_nfe` allows.

    Attributes:
        phase: "forward" (the ODE solve of the forward pass) or "backward" (adjoint solve / recomputation).
        limit: the `max_nfe` value that was exceeded.
    """

    def __init__(self, phase: str, limit: int) -> None:
        super().__init__(
            f"the {phase} ODE solve exceeded max_nfe={limit} function evaluations (option 'network_g.max_nfe'); "
            "the dynamics are too stiff for the tolerances: loosen rtol/atol, use a fixed-step solver "
            "(solver: fixed_rk4, backprop: anode), or raise max_nfe"
        )
        self.phase = phase
        self.limit = limit
