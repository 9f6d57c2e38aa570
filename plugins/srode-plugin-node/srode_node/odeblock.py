"""An ODE block: integrate a vector field over [0, T] with NFE accounting, a max-NFE guard and three
ways to backpropagate (discrete, adjoint, anode)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torchdiffeq
from torch import Tensor, nn

from srode_node.errors import MaxNFEExceeded, ODESolveFailed, SolverBreakdown
from srode_node.solvers import FIXED_STEP_SOLVERS, ButcherTableau, integrate_fixed_step
from srode_plugins.api import OptionError

BACKPROP_MODES = ("discrete", "adjoint", "anode")
TORCHDIFFEQ_FIXED_GRID = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams",
                          "fixed_adams")
TORCHDIFFEQ_ADAPTIVE = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
# torchdiffeq reports a failed solve only through the text of an AssertionError / RuntimeError
TORCHDIFFEQ_FAILURES = (
    ("underflow in dt", "the adaptive step size underflowed (torchdiffeq: 'underflow in dt')"),
    ("non-finite values in state", "the state became inf/NaN (torchdiffeq: 'non-finite values in state')"),
    ("max_num_steps exceeded", "the solver hit its step limit (torchdiffeq: 'max_num_steps exceeded')"),
    ("Reached maximum number of iterations", "the solver hit its iteration limit (torchdiffeq: 'Reached maximum "
     "number of iterations')"),
)


def available_solvers() -> list[str]:
    """Every `solver:` value the ODE block accepts: this package's fixed-step table, then torchdiffeq's."""
    return [*FIXED_STEP_SOLVERS, *TORCHDIFFEQ_ADAPTIVE, *TORCHDIFFEQ_FIXED_GRID]


def as_solver_breakdown(error: BaseException, phase: str, nfe: int) -> SolverBreakdown | None:
    """The `SolverBreakdown` that a torchdiffeq `error` stands for, or None when it is not a solver failure."""
    if isinstance(error, ODESolveFailed) or not isinstance(error, AssertionError | RuntimeError):
        return None
    text = str(error)
    for marker, reason in TORCHDIFFEQ_FAILURES:
        if marker in text:
            return SolverBreakdown(phase, reason, nfe)
    return None


class CountedODEFunc(nn.Module):
    """Wraps a vector field `f(t, z)`, counting forward and backward evaluations and enforcing `max_nfe`.

    Calls made while `phase == "forward"` count as forward NFE; once the block's forward solve returns it
    switches to `"backward"`, so evaluations made by the adjoint solve or the ANODE recomputation count as
    backward NFE.
    """

    def __init__(self, func: nn.Module, max_nfe: int | None) -> None:
        super().__init__()
        self.func = func
        self.max_nfe = max_nfe
        self.nfe_forward = 0
        self.nfe_backward = 0
        self.phase = "forward"

    def start_forward(self) -> None:
        """Reset both counters and count the next evaluations as forward ones."""
        self.nfe_forward = 0
        self.nfe_backward = 0
        self.phase = "forward"

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        if self.phase == "forward":
            self.nfe_forward += 1
            count = self.nfe_forward
        else:
            self.nfe_backward += 1
            count = self.nfe_backward
        if self.max_nfe is not None and count > self.max_nfe:
            raise MaxNFEExceeded(self.phase, self.max_nfe)
        return self.func(t, z)


class _CheckpointedFixedStep(torch.autograd.Function):
    """ANODE's checkpointed discrete adjoint: the forward solve runs without a graph and keeps only z0;
    backward recomputes the trajectory from z0 with the same steps and backpropagates through it, so the
    gradient equals discrete backprop exactly while storing one block's activations only during backward."""

    @staticmethod
    def forward(ctx: Any, z0: Tensor, solve: Callable[[Tensor], Tensor], *params: Tensor) -> Tensor:
        device_type = z0.device.type
        ctx.solve = solve
        ctx.autocast = {
            "device_type": device_type,
            "enabled": torch.is_autocast_enabled(device_type),
            "dtype": torch.get_autocast_dtype(device_type),
        }
        ctx.save_for_backward(z0, *params)
        with torch.no_grad():
            return solve(z0)

    @staticmethod
    def backward(ctx: Any, grad_z1: Tensor) -> tuple[Tensor | None, ...]:
        z0, *params = ctx.saved_tensors
        with torch.enable_grad(), torch.autocast(**ctx.autocast):
            z0_leaf = z0.detach().requires_grad_(True)
            z1 = ctx.solve(z0_leaf)
            inputs = [z0_leaf, *(p for p in params if p.requires_grad)]
            grads = iter(torch.autograd.grad(z1, inputs, grad_z1, allow_unused=True))
        grad_z0 = next(grads)
        grad_params = [next(grads) if p.requires_grad else None for p in params]
        return (grad_z0, None, *grad_params)


class ODEBlock(nn.Module):
    """Solve `dz/dt = func(t, z)` over `[0, integration_time]` and return `z(T)`.

    Args:
        func: vector field module `f(t, z) -> dz/dt`, shapes `(B, C, H, W) -> (B, C, H, W)`.
        integration_time: T, end of the integration interval (start is 0).
        solver: a fixed-step solver of this package (`fixed_euler`, `fixed_midpoint`, `fixed_rk4`) or any
            torchdiffeq method (`dopri5`, `rk4` = 3/8 rule, ...).
        rtol, atol: tolerances of adaptive torchdiffeq solvers (forward and adjoint solves).
        step_size: step length of fixed-step solvers (required for them, ignored by adaptive ones).
        backprop: "discrete" (autograd through the solver), "adjoint" (torchdiffeq's continuous adjoint) or
            "anode" (checkpointed discrete adjoint; fixed-step solvers of this package only).
        adjoint_seminorm: use the seminorm for the adjoint solve's error control (Kidger et al. 2021).
        max_nfe: largest number of evaluations allowed in one forward solve and, separately, in one
            backward pass; exceeding it raises `MaxNFEExceeded`. None: no limit. A torchdiffeq solve that
            breaks down (dt underflow, non-finite state, step limit) raises `SolverBreakdown` in the forward
            pass; `as_solver_breakdown` recognises the same failures raised by the adjoint backward solve.
        option_prefix: where these options live in the option file, for error messages.
    """

    def __init__(
        self,
        func: nn.Module,
        *,
        integration_time: float = 1.0,
        solver: str = "dopri5",
        rtol: float = 1e-4,
        atol: float = 1e-4,
        step_size: float | None = None,
        backprop: str = "discrete",
        adjoint_seminorm: bool = False,
        max_nfe: int | None = None,
        option_prefix: str = "network_g",
    ) -> None:
        super().__init__()
        _validate(solver, backprop, step_size, integration_time, max_nfe, option_prefix)
        self.odefunc = CountedODEFunc(func, max_nfe)
        self.integration_time = float(integration_time)
        self.solver = solver
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.step_size = None if step_size is None else float(step_size)
        self.backprop = backprop
        self.adjoint_seminorm = adjoint_seminorm

    @property
    def nfe_forward(self) -> int:
        """Vector-field evaluations of the last forward solve."""
        return self.odefunc.nfe_forward

    @property
    def nfe_backward(self) -> int:
        """Vector-field evaluations made by the backward pass since the last forward (0 for discrete)."""
        return self.odefunc.nfe_backward

    def forward(self, z0: Tensor) -> Tensor:
        """`z0` `(B, C, H, W)` -> `z(T)` of the same shape (at least float32: under bf16 / fp16 autocast the
        state is integrated in float32 while the vector field's convolutions run in low precision)."""
        self.odefunc.start_forward()
        z0 = z0.to(torch.promote_types(z0.dtype, torch.float32))
        if self.solver in FIXED_STEP_SOLVERS:
            z1 = self._solve_fixed_step(z0, FIXED_STEP_SOLVERS[self.solver])
        else:
            z1 = self._solve_torchdiffeq(z0)
        self.odefunc.phase = "backward"
        return z1

    def _solve_fixed_step(self, z0: Tensor, tableau: ButcherTableau) -> Tensor:
        def solve(z: Tensor) -> Tensor:
            return integrate_fixed_step(self.odefunc, z, 0.0, self.integration_time, self.step_size, tableau)

        if self.backprop == "anode" and torch.is_grad_enabled():
            return _CheckpointedFixedStep.apply(z0, solve, *self.odefunc.parameters())
        return solve(z0)

    def _solve_torchdiffeq(self, z0: Tensor) -> Tensor:
        times = torch.tensor([0.0, self.integration_time], dtype=z0.dtype, device=z0.device)
        if self.solver in TORCHDIFFEQ_FIXED_GRID:
            tolerances: dict[str, Any] = {"options": {"step_size": self.step_size}}
        else:
            tolerances = {"rtol": self.rtol, "atol": self.atol}
        try:
            if self.backprop == "adjoint":
                adjoint_options = {"norm": "seminorm"} if self.adjoint_seminorm else None
                trajectory = torchdiffeq.odeint_adjoint(
                    self.odefunc, z0, times, method=self.solver, adjoint_options=adjoint_options, **tolerances
                )
            else:
                trajectory = torchdiffeq.odeint(self.odefunc, z0, times, method=self.solver, **tolerances)
        except (AssertionError, RuntimeError) as error:
            breakdown = as_solver_breakdown(error, "forward", self.nfe_forward)
            if breakdown is None:
                raise
            raise breakdown from error
        return trajectory[-1]


def _validate(
    solver: str, backprop: str, step_size: float | None, integration_time: float, max_nfe: int | None, prefix: str
) -> None:
    if solver not in available_solvers():
        raise OptionError(f"unknown solver {solver!r}; choose one of {available_solvers()}", key=f"{prefix}.solver")
    if backprop not in BACKPROP_MODES:
        raise OptionError(f"unknown backprop {backprop!r}; choose one of {list(BACKPROP_MODES)}",
                          key=f"{prefix}.backprop")
    fixed_step = solver in FIXED_STEP_SOLVERS or solver in TORCHDIFFEQ_FIXED_GRID
    if fixed_step and (step_size is None or step_size <= 0):
        raise OptionError(f"solver {solver!r} takes fixed steps and needs step_size > 0, got {step_size!r}; "
                          "set e.g. step_size: 0.2 (5 steps over [0, 1])", key=f"{prefix}.step_size")
    if backprop == "anode" and solver not in FIXED_STEP_SOLVERS:
        raise OptionError(f"backprop 'anode' recomputes a fixed-step trajectory and needs one of "
                          f"{list(FIXED_STEP_SOLVERS)}, got solver {solver!r}", key=f"{prefix}.solver")
    if backprop == "adjoint" and solver in FIXED_STEP_SOLVERS:
        raise OptionError(f"backprop 'adjoint' uses torchdiffeq; solver {solver!r} is not a torchdiffeq method. "
                          "Use backprop: anode with it, or solver: rk4 (torchdiffeq's 3/8 rule)",
                          key=f"{prefix}.backprop")
    if integration_time <= 0:
        raise OptionError(f"integration_time must be > 0, got {integration_time!r}", key=f"{prefix}.integration_time")
    if max_nfe is not None and (isinstance(max_nfe, bool) or not isinstance(max_nfe, int) or max_nfe < 1):
        raise OptionError(f"max_nfe must be a positive integer or null, got {max_nfe!r}", key=f"{prefix}.max_nfe")
