"""Samplers of the residual-shifting chain, each with its network-evaluation (NFE) accounting.

Every sampler starts from the prior x_T = y + kappa sqrt(eta(1)) z, walks a grid of N points from t = 1 down
to t_min = 1/T and returns the x0 prediction at the last point: the jump to t = 0 goes through x0_hat, never
through a biased Euler step. A denoiser is any callable ``denoise(x, t, eta) -> x0_hat`` on (B, C, H, W)
tensors with t, eta python floats (`ResShiftDenoiser` wraps a network that way).

ODE forms used (x0_hat stands for the denoiser output, y for the upsampled LR image):
- in eta:   dx/d eta = (x - x0_hat) / (2 eta) + (y - x0_hat) / 2
- in sigma: dw/d sigma = (w - x0_hat) / sigma, w = (x - eta y) / (1 - eta), sigma = kappa sqrt(eta) / (1 - eta)
Both are the same probability-flow ODE; the reverse SDE in eta is dx = (x - x0_hat) / eta d eta + kappa dW.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .grids import GRID_KINDS, SamplingGrid, build_grid
from .schedules import ContinuousSchedule, ResShiftSchedule, sigma_from_eta

__all__ = [
    "HEUN_ETA_MIN_RATIO",
    "RESPACINGS",
    "DPMSolverPP2MSampler",
    "Denoiser",
    "DiscreteResShiftSampler",
    "EulerMaruyamaSampler",
    "EulerSampler",
    "HeunSampler",
    "ResShiftSampler",
    "SamplingResult",
    "heun_eta_noise_gain",
    "respaced_step_indices",
]

Denoiser = Callable[[Tensor, float, float], Tensor]
ODE_VARIABLES = ("eta", "sigma")


@dataclass
class SamplingResult:
    """x0: the sample (B, C, H, W); last_state: x at the last grid point before the x0 jump; nfe: network calls."""

    x0: Tensor
    last_state: Tensor
    nfe: int


class _CountingDenoiser:
    def __init__(self, denoise: Denoiser) -> None:
        self.denoise = denoise
        self.calls = 0

    def __call__(self, x: Tensor, t: float, eta: float) -> Tensor:
        self.calls += 1
        return self.denoise(x, float(t), float(eta))


def _gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class ResShiftSampler(ABC):
    """Base class: `sample` runs the sampler, `nfe` says how many network calls one sample costs."""

    label: str = "sampler"
    uses_grid: bool = False  # True: takes 'grid' and 'rho' options

    def __init__(self, num_steps: int) -> None:
        if int(num_steps) != num_steps or num_steps < 1:
            raise ValueError(f"sampler option 'num_steps' must be a positive integer, got {num_steps!r}")
        self.num_steps = int(num_steps)

    @abstractmethod
    def nfe(self) -> int:
        """Network evaluations per sample."""

    @classmethod
    def num_steps_for_nfe(cls, nfe: int) -> int:
        """The largest num_steps whose NFE does not exceed `nfe` (for sweeps at equal NFE)."""
        return int(nfe)

    def check(self, schedule: ResShiftSchedule) -> None:
        """Raise (ValueError / TypeError) now, before any network call, if this sampler cannot run on `schedule`."""
        return None  # samplers without constraints accept every schedule

    def describe(self) -> dict[str, object]:
        """Row of the evaluation table: sampler label, grid, rho, steps and NFE."""
        return {"sampler": self.label, "grid": "-", "rho": "-", "steps": self.num_steps, "nfe": self.nfe()}

    @torch.no_grad()
    def sample(
        self,
        denoise: Denoiser,
        y: Tensor,
        schedule: ResShiftSchedule,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SamplingResult:
        """Draw x0 given y (B, C, H, W), the LR image upsampled (or its latent), under `schedule`."""
        noise = _gaussian_like(y, generator) if noise is None else noise
        counting = _CountingDenoiser(denoise)
        x0, last_state = self._run(counting, y, schedule, noise, generator)
        return SamplingResult(x0=x0, last_state=last_state, nfe=counting.calls)

    @abstractmethod
    def _run(
        self, denoise: Denoiser, y: Tensor, schedule: ResShiftSchedule, noise: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Return (x0_hat, x at the last grid point)."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value}" for key, value in self.describe().items() if key != "sampler")
        return f"{type(self).__name__}({fields})"


RESPACINGS = ("space_timesteps", "linspace")


def respaced_step_indices(num_timesteps: int, num_steps: int, respacing: str) -> np.ndarray:
    """Chain steps k in 0..T-1 kept by a respaced sampler, ascending, shape (num_steps,).

    ``space_timesteps``: the official rule, k = floor(x T / N) for x = 0..N-1 (ResShift's
    ``models/respace.py``); it keeps step 0 but, for N < T, never T - 1 (its last step is floor(T - T/N)), so
    the chain starts from a smaller eta than eta_{T-1} (T=15, N=4: steps 0, 3, 7, 11, from eta_11 = 0.568, not
    eta_14 = 0.980).
    ``linspace``: round(linspace(0, T - 1, N)), which keeps both ends (T=15, N=4: 0, 5, 9, 14).
    """
    if respacing not in RESPACINGS:
        raise ValueError(f"sampler option 'respacing' is {respacing!r}; choose one of {list(RESPACINGS)}")
    if num_steps > num_timesteps:
        raise ValueError(f"sampler option 'num_steps' ({num_steps}) exceeds the schedule's T={num_timesteps}")
    if respacing == "space_timesteps":
        indices = np.array([int((num_timesteps / num_steps) * x) for x in range(num_steps)])
    else:
        indices = np.unique(np.round(np.linspace(0, num_timesteps - 1, num_steps)).astype(int))
    if np.unique(indices).size != num_steps:
        raise ValueError(
            f"sampler option 'num_steps' ({num_steps}) cannot be spaced over T={num_timesteps} steps "
            f"with respacing: {respacing}"
        )
    return indices


class DiscreteResShiftSampler(ResShiftSampler):
    """The official ResShift ancestral sampler on the discrete chain (the baseline).

    x_{k-1} ~ N(eta_{k-1}/eta_k x_k + alpha_k/eta_k x0_hat, kappa^2 eta_{k-1}/eta_k alpha_k),
    alpha_k = eta_k - eta_{k-1}; the last step (eta_{-1} = 0) returns x0_hat itself.
    ``num_steps`` below T respaces the chain (`respaced_step_indices`): the sampler walks the kept steps only,
    from the prior y + kappa sqrt(eta_last) z at the last kept step, with eta_{k-1} the previous kept step's
    eta, as the official respaced diffusion recomputes its schedule. ``respacing: space_timesteps`` (default)
    keeps the official ``timestep_respacing`` steps; ``linspace`` keeps both chain ends. num_steps = T is the
    original chain under both. NFE = num_steps.
    """

    label = "discrete"

    def __init__(self, num_steps: int = 15, respacing: str = "space_timesteps") -> None:
        super().__init__(num_steps)
        if respacing not in RESPACINGS:
            raise ValueError(f"sampler option 'respacing' is {respacing!r}; choose one of {list(RESPACINGS)}")
        self.respacing = respacing

    def nfe(self) -> int:
        return self.num_steps

    def describe(self) -> dict[str, object]:
        described = super().describe()
        if self.respacing != "space_timesteps":
            described["sampler"] = f"{self.label} ({self.respacing})"
        return described

    def step_indices(self, schedule: ResShiftSchedule) -> np.ndarray:
        """Chain steps k visited, ascending, shape (num_steps,)."""
        return respaced_step_indices(schedule.num_timesteps, self.num_steps, self.respacing)

    def check(self, schedule: ResShiftSchedule) -> None:
        self.step_indices(schedule)

    def _run(self, denoise, y, schedule, noise, generator):
        indices = self.step_indices(schedule)
        all_etas, all_times = schedule.grid_etas(), schedule.grid_times()
        x = y + schedule.kappa * math.sqrt(all_etas[indices[-1]]) * noise
        for position in range(indices.size - 1, -1, -1):
            step = indices[position]
            eta, t = float(all_etas[step]), float(all_times[step])
            x0 = denoise(x, t, eta)
            if position == 0:
                return x0, x
            eta_prev = float(all_etas[indices[position - 1]])
            alpha = eta - eta_prev
            mean = (eta_prev / eta) * x + (alpha / eta) * x0
            std = schedule.kappa * math.sqrt(eta_prev / eta * alpha)
            x = mean + std * _gaussian_like(x, generator)
        raise AssertionError("unreachable: the loop returns at position 0")


class _GridSampler(ResShiftSampler):
    """A sampler on a rho grid in t (the seed's spacing, `rho_time_grid`) or in sigma (EDM / Karras) over a
    continuous schedule."""

    uses_grid = True

    def __init__(self, num_steps: int = 15, grid: str = "t", rho: float = 1.0) -> None:
        super().__init__(num_steps)
        if num_steps < 2:
            raise ValueError(f"sampler option 'num_steps' must be >= 2 for {type(self).__name__}, got {num_steps}")
        if grid not in GRID_KINDS:
            raise ValueError(f"sampler option 'grid' is {grid!r}; choose one of {list(GRID_KINDS)}")
        if rho == 0:
            raise ValueError("sampler option 'rho' must be non-zero (rho=1 is the uniform grid)")
        self.grid = grid
        self.rho = float(rho)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "grid": self.grid, "rho": f"{self.rho:g}"}

    def build_grid(self, schedule: ResShiftSchedule) -> SamplingGrid:
        if not isinstance(schedule, ContinuousSchedule):
            raise TypeError(
                f"{type(self).__name__} needs a continuous schedule, got {type(schedule).__name__}; set "
                "'schedule.type' to ContinuousPowerSchedule (exact extension of the official chain) or "
                "ExponentialSchedule, or use DiscreteResShiftSampler"
            )
        return build_grid(schedule, self.num_steps, self.grid, self.rho)

    def check_grid(self, grid: SamplingGrid) -> None:
        """Raise ValueError if the solver cannot run on `grid` (the default accepts any grid)."""

    def check(self, schedule: ResShiftSchedule) -> None:
        self.check_grid(self.build_grid(schedule))

    def _run(self, denoise, y, schedule, noise, generator):
        grid = self.build_grid(schedule)
        self.check_grid(grid)
        x_start = y + schedule.kappa * math.sqrt(grid.etas[0]) * noise
        last_state = self._integrate(denoise, y, schedule.kappa, grid, x_start, generator)
        return denoise(last_state, grid.times[-1], grid.etas[-1]), last_state

    @abstractmethod
    def _integrate(
        self, denoise: Denoiser, y: Tensor, kappa: float, grid: SamplingGrid, x: Tensor, generator
    ) -> Tensor:
        """Carry x from the first to the last grid point; return x at the last point."""


class _OdeCoordinates:
    """State and time of the probability-flow ODE in eta (state x) or in sigma (state w)."""

    def __init__(self, variable: str, y: Tensor, kappa: float) -> None:
        self.variable, self.y, self.kappa = variable, y, kappa

    def time(self, eta: float) -> float:
        return eta if self.variable == "eta" else float(sigma_from_eta(eta, self.kappa))

    def state(self, x: Tensor, eta: float) -> Tensor:
        return x if self.variable == "eta" else (x - eta * self.y) / (1.0 - eta)

    def image(self, state: Tensor, eta: float) -> Tensor:
        return state if self.variable == "eta" else (1.0 - eta) * state + eta * self.y

    def derivative(self, state: Tensor, x0: Tensor, time: float) -> Tensor:
        if self.variable == "eta":
            return (state - x0) / (2.0 * time) + 0.5 * (self.y - x0)
        return (state - x0) / time


class _OdeSampler(_GridSampler):
    default_variable = "eta"

    def __init__(self, num_steps: int = 15, grid: str = "t", rho: float = 1.0, variable: str | None = None) -> None:
        super().__init__(num_steps, grid, rho)
        variable = self.default_variable if variable is None else variable
        if variable not in ODE_VARIABLES:
            raise ValueError(f"sampler option 'variable' is {variable!r}; choose one of {list(ODE_VARIABLES)}")
        self.variable = variable

    def describe(self) -> dict[str, object]:
        described = super().describe()
        if self.variable != self.default_variable:
            described["sampler"] = f"{self.label} ({self.variable})"
        return described


class EulerSampler(_OdeSampler):
    """Euler on the probability-flow ODE, in eta by default, or in sigma (``variable: sigma``: DDIM, exact on the
    flow of a fixed x0_hat). Not the seed's Euler, which steps dt alpha(t) D in t and ends with a step to t = 0
    (`SeedEulerSampler`). In eta a step keeps (1 + eta_next / eta) / 2 of the noise where
    the exact flow keeps sqrt(eta_next / eta): stable on any grid, first order. NFE = N."""

    label = "Euler"

    def nfe(self) -> int:
        return self.num_steps

    def _integrate(self, denoise, y, kappa, grid, x, generator):
        coords = _OdeCoordinates(self.variable, y, kappa)
        state = coords.state(x, grid.etas[0])
        for i in range(grid.num_points - 1):
            eta, eta_next = grid.etas[i], grid.etas[i + 1]
            x0 = denoise(coords.image(state, eta), grid.times[i], eta)
            time, time_next = coords.time(eta), coords.time(eta_next)
            state = state + (time_next - time) * coords.derivative(state, x0, time)
        return coords.image(state, grid.etas[-1])


def heun_eta_noise_gain(ratio: float | np.ndarray) -> float | np.ndarray:
    """Factor by which one Heun step in eta, from eta to ratio * eta with x0_hat held fixed, multiplies the
    noise part c sqrt(eta) of x - x0_hat (the exact flow multiplies it by sqrt(ratio)).

    Predictor and corrector on dx/d eta = (x - x0_hat) / (2 eta) + ...: g(r) = 1 + (r - 1)/4 + (r^2 - 1)/(8 r).
    |g(r)| <= 1 needs r >= (sqrt(52) - 7)/3 = 0.0704; below it the step amplifies the noise (about -1/(8 r)).
    """
    return 1.0 + (ratio - 1.0) / 4.0 + (ratio * ratio - 1.0) / (8.0 * ratio)


HEUN_ETA_MIN_RATIO = (math.sqrt(52.0) - 7.0) / 3.0  # smallest eta_next / eta with |heun_eta_noise_gain| <= 1


class HeunSampler(_OdeSampler):
    """Heun (trapezoidal predictor-corrector, EDM style) on the probability-flow ODE. NFE = 2N - 1.

    Integrates w = (x - eta y) / (1 - eta) in sigma by default (``variable: sigma``), EDM's form, in which the
    flow of a fixed x0_hat is linear and Heun follows it exactly on any grid. ``variable: eta`` steps x in eta
    (the seed's Heun steps it in t: `SeedHeunSampler`); its (x - x0_hat) / (2 eta) term is stiff as eta -> 0,
    and a step with eta_next / eta below 0.0704 amplifies the remaining noise instead of shrinking it
    (`heun_eta_noise_gain`), so such grids are refused.
    """

    label = "Heun"
    default_variable = "sigma"

    def nfe(self) -> int:
        return 2 * self.num_steps - 1

    @classmethod
    def num_steps_for_nfe(cls, nfe: int) -> int:
        return max(2, (int(nfe) + 1) // 2)

    def check_grid(self, grid: SamplingGrid) -> None:
        """Refuse a grid on which Heun in eta would amplify the noise (only ``variable: eta`` can)."""
        if self.variable != "eta":
            return
        ratios = grid.etas[1:] / grid.etas[:-1]
        worst = int(np.argmin(ratios))
        if ratios[worst] < HEUN_ETA_MIN_RATIO:
            raise ValueError(
                f"HeunSampler with variable: eta is unstable on this grid (grid: {self.grid}, rho: {self.rho:g}, "
                f"num_steps: {self.num_steps}): its step from eta {grid.etas[worst]:.4g} to "
                f"{grid.etas[worst + 1]:.4g} (ratio {ratios[worst]:.3g} < {HEUN_ETA_MIN_RATIO:.4f}) multiplies the "
                f"remaining noise by {float(heun_eta_noise_gain(ratios[worst])):.3g} instead of "
                f"{math.sqrt(ratios[worst]):.3g}. Use variable: sigma (the default, exact on that part of the flow), "
                "or more steps near t_min"
            )

    def _integrate(self, denoise, y, kappa, grid, x, generator):
        coords = _OdeCoordinates(self.variable, y, kappa)
        state = coords.state(x, grid.etas[0])
        for i in range(grid.num_points - 1):
            eta, eta_next = grid.etas[i], grid.etas[i + 1]
            time, time_next = coords.time(eta), coords.time(eta_next)
            slope = coords.derivative(state, denoise(coords.image(state, eta), grid.times[i], eta), time)
            predicted = state + (time_next - time) * slope
            x0_next = denoise(coords.image(predicted, eta_next), grid.times[i + 1], eta_next)
            slope_next = coords.derivative(predicted, x0_next, time_next)
            state = state + (time_next - time) * 0.5 * (slope + slope_next)
        return coords.image(state, grid.etas[-1])


class EulerMaruyamaSampler(_GridSampler):
    """Euler-Maruyama on the reverse SDE dx = (x - x0_hat) / eta d eta + kappa dW (in eta). NFE = N."""

    label = "Euler-Maruyama"

    def nfe(self) -> int:
        return self.num_steps

    def _integrate(self, denoise, y, kappa, grid, x, generator):
        for i in range(grid.num_points - 1):
            eta, eta_next = grid.etas[i], grid.etas[i + 1]
            x0 = denoise(x, grid.times[i], eta)
            step = eta - eta_next
            x = x - (step / eta) * (x - x0) + kappa * math.sqrt(step) * _gaussian_like(x, generator)
        return x


class DPMSolverPP2MSampler(_GridSampler):
    """DPM-Solver++(2M): second-order multistep exponential integrator in sigma on w. NFE = N.

    With h_i = ln(sigma_i / sigma_{i+1}): w_{i+1} = (sigma_{i+1}/sigma_i) w_i + (1 - sigma_{i+1}/sigma_i) D_i,
    D_i = (1 + 1/(2 r_i)) x0_hat_i - 1/(2 r_i) x0_hat_{i-1}, r_i = h_{i-1} / h_i (first step: D_0 = x0_hat_0).
    """

    label = "DPM-Solver++(2M)"

    def __init__(self, num_steps: int = 8, grid: str = "sigma", rho: float = 7.0) -> None:
        super().__init__(num_steps, grid, rho)

    def nfe(self) -> int:
        return self.num_steps

    def _integrate(self, denoise, y, kappa, grid, x, generator):
        coords = _OdeCoordinates("sigma", y, kappa)
        sigmas = grid.sigmas(kappa)
        state = coords.state(x, grid.etas[0])
        previous_x0, previous_h = None, None
        for i in range(grid.num_points - 1):
            eta = grid.etas[i]
            x0 = denoise(coords.image(state, eta), grid.times[i], eta)
            h = math.log(sigmas[i] / sigmas[i + 1])
            if previous_x0 is None:
                combined = x0
            else:
                ratio = previous_h / h
                combined = (1.0 + 0.5 / ratio) * x0 - (0.5 / ratio) * previous_x0
            shrink = sigmas[i + 1] / sigmas[i]
            state = shrink * state + (1.0 - shrink) * combined
            previous_x0, previous_h = x0, h
        return coords.image(state, grid.etas[-1])
