"""The Neural-ODE family's own errors: every way an ODE solve can fail, as one family the NFE guard handles."""

from __future__ import annotations

from srode_plugins.api import SrodeError, TrainingAborted


class ODESolveFailed(TrainingAborted):
    """An ODE solve could not finish; `train.nfe_guard` skips the batch or stops training.

    Attributes:
        phase: "forward" (the ODE solve of the forward pass) or "backward" (adjoint solve / recomputation).
    """

    def __init__(self, message: str, phase: str) -> None:
        super().__init__(message)
        self.phase = phase


class MaxNFEExceeded(ODESolveFailed):
    """A solve needed more vector-field evaluations than `network_g.max_nfe` allows.

    Attributes:
        limit: the `max_nfe` value that was exceeded.
    """

    def __init__(self, phase: str, limit: int) -> None:
        super().__init__(
            f"the {phase} ODE solve exceeded max_nfe={limit} function evaluations (option 'network_g.max_nfe'); "
            "the dynamics are too stiff for the tolerances: loosen rtol/atol, use a fixed-step solver "
            "(solver: fixed_rk4, backprop: anode), or raise max_nfe",
            phase,
        )
        self.limit = limit


class SolverBreakdown(ODESolveFailed):
    """torchdiffeq's adaptive solver gave up: its step size underflowed, the state became non-finite, or it hit
    its own step limit. All three mean the vector field exploded (or the weights already hold inf/NaN).

    Attributes:
        reason: what the solver reported, in words.
        nfe: vector-field evaluations made by the failed solve.
    """

    def __init__(self, phase: str, reason: str, nfe: int) -> None:
        super().__init__(
            f"the {phase} ODE solve broke down after {nfe} function evaluations: {reason}. The vector field "
            "exploded or the state holds inf/NaN: lower the learning rate (train.optim_g.lr), set "
            "train.grad_clip, or use a fixed-step solver (network_g.solver: fixed_rk4, backprop: anode)",
            phase,
        )
        self.reason = reason
        self.nfe = nfe


class UnrecognisedCheckpoint(SrodeError):
    """A checkpoint handed to a converter holds keys the converter does not know (another architecture)."""
