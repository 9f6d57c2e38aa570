"""Fixed-step explicit Runge-Kutta solvers, as a table of Butcher tableaus.

torchdiffeq's registered `rk4` is Kutta's 3/8 rule; `fixed_rk4` here is the classic 1/6-1/3-1/3-1/6 method
used by ANODE. Every solver takes `func(t, z) -> dz/dt` with `t` a 0-d tensor of `z`'s dtype and device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

ODEFunction = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge-Kutta method: `c` nodes, strictly lower-triangular `a` rows, `b` weights."""

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]

    @property
    def stages(self) -> int:
        """Function evaluations per step."""
        return len(self.b)


FIXED_STEP_SOLVERS: dict[str, ButcherTableau] = {
    "fixed_euler": ButcherTableau("fixed_euler", 1, c=(0.0,), a=((),), b=(1.0,)),
    "fixed_midpoint": ButcherTableau("fixed_midpoint", 2, c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0)),
    "fixed_rk4": ButcherTableau(
        "fixed_rk4",
        4,
        c=(0.0, 0.5, 0.5, 1.0),
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    ),
}


def num_fixed_steps(t0: float, t1: float, step_size: float) -> int:
    """Number of equal steps covering [t0, t1] with steps no longer than `step_size` (at least 1)."""
    # the small slack keeps 1.0 / 0.2 at 5 steps despite floating-point rounding
    return max(1, math.ceil(abs(t1 - t0) / step_size - 1e-9))


def rk_step(func: ODEFunction, tableau: ButcherTableau, t: float, z: Tensor, h: float) -> Tensor:
    """One explicit Runge-Kutta step of size `h` from `(t, z)`; calls `func` `tableau.stages` times."""
    slopes: list[Tensor] = []
    for c_i, a_i in zip(tableau.c, tableau.a, strict=True):
        stage_state = z
        for a_ij, slope in zip(a_i, slopes, strict=False):
            if a_ij != 0.0:
                stage_state = stage_state + (h * a_ij) * slope
        t_stage = torch.as_tensor(t + c_i * h, dtype=z.dtype, device=z.device)
        slopes.append(func(t_stage, stage_state))
    increment = None
    for b_i, slope in zip(tableau.b, slopes, strict=True):
        if b_i != 0.0:
            term = (h * b_i) * slope
            increment = term if increment is None else increment + term
    return z + increment


def integrate_fixed_step(
    func: ODEFunction, z0: Tensor, t0: float, t1: float, step_size: float, tableau: ButcherTableau
) -> Tensor:
    """Integrate `dz/dt = func(t, z)` from `t0` to `t1` with equal steps of at most `step_size`.

    Args:
        func: the vector field; called `tableau.stages` times per step.
        z0: initial state, any shape (e.g. `(B, C, H, W)` feature maps).
        t0, t1: integration interval (`t1 < t0` integrates backwards).
        step_size: largest step length, > 0.
        tableau: the method, e.g. `FIXED_STEP_SOLVERS["fixed_rk4"]`.

    Returns:
        The state at `t1`, same shape and dtype as `z0`.
    """
    steps = num_fixed_steps(t0, t1, step_size)
    h = (t1 - t0) / steps
    z = z0
    for index in range(steps):
        z = rk_step(func, tableau, t0 + index * h, z, h)
    return z
