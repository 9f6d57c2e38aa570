"""The continuous-time seed's own ODE samplers (GitHub daniil-shlenskii/resshift-continuous-in-time, ``samplers.py``).

They integrate the probability-flow ODE in t with x as the state,

    dx/dt = alpha(t) D(x, t),   D = (x - x0_hat) / (2 eta) + (y - x0_hat) / 2,

(the seed writes alpha e0 - alpha kappa^2 s / 2 with the score s = -(x - (1 - eta) x0_hat - eta y) / (kappa^2 eta)),
on `seed_time_grid`: N points from t = 1 to 1/T, then a last step to t = 0, whose state is the sample.
srode's own `EulerSampler` / `HeunSampler` step in eta or sigma instead and jump to t = 0 through x0_hat; the
plugin README says why and by how much they differ.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np
from torch import Tensor

from .grids import SamplingGrid, seed_time_grid
from .samplers import Denoiser, ResShiftSampler
from .schedules import ContinuousSchedule, ResShiftSchedule

__all__ = ["SeedEulerSampler", "SeedHeunSampler"]


class _SeedSampler(ResShiftSampler):
    """N grid points from t = 1 to 1/T plus t = 0; ``rho`` as in the seed (rho < 0: mirrored over [0, 1])."""

    uses_grid = True

    def __init__(self, num_steps: int = 15, rho: float = 1.0) -> None:
        super().__init__(num_steps)
        if num_steps < 2:
            raise ValueError(f"sampler option 'num_steps' must be >= 2 for {type(self).__name__}, got {num_steps}")
        if rho == 0:
            raise ValueError("sampler option 'rho' must be non-zero (rho=1 is the uniform grid)")
        self.rho = float(rho)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "grid": "seed", "rho": f"{self.rho:g}"}

    def build_grid(self, schedule: ResShiftSchedule) -> SamplingGrid:
        """The seed's grid with eta(t); N + 1 points, the last at t = 0."""
        if not isinstance(schedule, ContinuousSchedule):
            raise TypeError(
                f"{type(self).__name__} needs a continuous schedule with alpha(t), got {type(schedule).__name__}; "
                "set 'schedule.type' to ExponentialSchedule (the seed's, preset: authors)"
            )
        times = seed_time_grid(self.num_steps, self.rho, schedule.t_min)
        return SamplingGrid(times=times, etas=schedule.eta(times))

    def check(self, schedule: ResShiftSchedule) -> None:
        """Refuse a schedule whose alpha(t) is not finite, or eta(t) not positive, where the network is called."""
        grid = self.build_grid(schedule)
        if not schedule.alpha_bounded:
            raise ValueError(
                f"{type(self).__name__} steps by dt alpha(t) D(x, t), but {type(schedule).__name__} has an unbounded "
                "alpha(t) (d eta / dt ~ (T t - 1)^(power - 1) just above t = 1/T, where the grid ends); use "
                "ExponentialSchedule (preset: authors, the seed's), or EulerSampler / HeunSampler, which step in eta"
            )
        evaluated = grid.times[:-1]
        alphas, etas = schedule.alpha(evaluated), grid.etas[:-1]
        bad = np.flatnonzero(~np.isfinite(alphas) | ~(etas > 0))
        if bad.size:
            where = evaluated[bad[0]]
            raise ValueError(
                f"{type(self).__name__} steps by dt alpha(t) D(x, t), but at t = {where:.6g} alpha = "
                f"{float(alphas[bad[0]]):.4g}, eta = {float(etas[bad[0]]):.4g} ({type(schedule).__name__}); "
                "use ExponentialSchedule (alpha finite everywhere) or EulerSampler / HeunSampler, which step in eta"
            )

    def _run(self, denoise, y, schedule, noise, generator):
        self.check(schedule)
        grid = self.build_grid(schedule)
        alphas = schedule.alpha(grid.times)
        x = y + schedule.kappa * math.sqrt(grid.etas[0]) * noise
        last_state = x
        for i in range(self.num_steps):
            last_state = x
            x = self._step(denoise, y, grid, alphas, i, x)
        return x, last_state

    @abstractmethod
    def _step(self, denoise: Denoiser, y: Tensor, grid: SamplingGrid, alphas: np.ndarray, i: int, x: Tensor) -> Tensor:
        """x at grid point i + 1 from x at point i."""

    @staticmethod
    def drift(denoise: Denoiser, y: Tensor, grid: SamplingGrid, alphas: np.ndarray, i: int, x: Tensor) -> Tensor:
        """dx/dt = alpha(t_i) ((x - x0_hat) / (2 eta_i) + (y - x0_hat) / 2) at grid point i (needs eta_i > 0)."""
        eta, alpha = float(grid.etas[i]), float(alphas[i])
        x0 = denoise(x, float(grid.times[i]), eta)
        return alpha * ((x - x0) / (2.0 * eta) + 0.5 * (y - x0))


class SeedEulerSampler(_SeedSampler):
    """The seed's Euler: x_{i+1} = x_i + (t_{i+1} - t_i) alpha(t_i) D(x_i, t_i), i = 0..N-1, the last step to
    t = 0; the sample is x at t = 0. NFE = N (``num_steps`` = N: the seed's ``n_steps + 1``)."""

    label = "Euler (seed)"

    def nfe(self) -> int:
        return self.num_steps

    def _step(self, denoise, y, grid, alphas, i, x):
        return x + float(grid.times[i + 1] - grid.times[i]) * self.drift(denoise, y, grid, alphas, i, x)


class SeedHeunSampler(_SeedSampler):
    """The seed's Heun: trapezoidal predictor-corrector in t between the N points from 1 to 1/T, and a plain
    Euler step from 1/T to t = 0 (D has eta(0) = 0 in a denominator). NFE = 2N - 1."""

    label = "Heun (seed)"

    def nfe(self) -> int:
        return 2 * self.num_steps - 1

    @classmethod
    def num_steps_for_nfe(cls, nfe: int) -> int:
        return max(2, (int(nfe) + 1) // 2)

    def _step(self, denoise, y, grid, alphas, i, x):
        step = float(grid.times[i + 1] - grid.times[i])
        slope = self.drift(denoise, y, grid, alphas, i, x)
        predicted = x + step * slope
        if i == self.num_steps - 1:
            return predicted
        return x + 0.5 * step * (slope + self.drift(denoise, y, grid, alphas, i + 1, predicted))
