"""Sampling grids: where the N network evaluations of a sampler go, from t = 1 down to t_min = 1/T.

A grid is N points (t_i, eta_i), t_0 = 1 > ... > t_{N-1} = t_min; the sampler integrates between them and
then jumps to t = 0 through the x0 prediction at t_{N-1}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schedules import ContinuousSchedule, eta_from_sigma, sigma_from_eta

__all__ = ["GRID_KINDS", "SamplingGrid", "build_grid", "rho_sigma_grid", "rho_time_grid", "seed_time_grid"]

GRID_KINDS = ("t", "sigma")


@dataclass(frozen=True)
class SamplingGrid:
    """Grid points of a sampler; every array has shape (N,) and runs from t = 1 down to t_min."""

    times: np.ndarray
    etas: np.ndarray

    @property
    def num_points(self) -> int:
        return int(self.times.shape[0])

    def sigmas(self, kappa: float) -> np.ndarray:
        return sigma_from_eta(self.etas, kappa)


def _check_grid_size(num_points: int, rho: float) -> None:
    if int(num_points) != num_points or num_points < 2:
        raise ValueError(f"sampler option 'num_steps' must be an integer >= 2, got {num_points!r}")
    if rho == 0:
        raise ValueError("sampler option 'rho' must be non-zero (rho=1 is the uniform grid)")


def rho_time_grid(num_points: int, rho: float, t_min: float) -> np.ndarray:
    """The seed's spacing in t: t_i = (1 + i/(N-1) (t_min^(1/rho) - 1))^rho, i = 0..N-1, shape (N,).

    rho > 1 packs points near t_min; rho < 0 uses the grid of |rho| mirrored inside [t_min, 1]
    (t_{N-1-i} = 1 + t_min - t_i), which packs points near t = 1 and, unlike the seed's mirror over [0, 1]
    (`seed_time_grid`), keeps the last point at t_min, where srode's samplers jump to x0_hat.
    """
    _check_grid_size(num_points, rho)
    exponent = abs(rho)
    fraction = np.linspace(0.0, 1.0, int(num_points))
    times = (1.0 + fraction * (t_min ** (1.0 / exponent) - 1.0)) ** exponent
    if rho < 0:
        times = (1.0 + t_min - times)[::-1]
    times[0], times[-1] = 1.0, t_min
    return times


def seed_time_grid(num_points: int, rho: float, t_min: float) -> np.ndarray:
    """The seed's grid (resshift-continuous-in-time, ``inference.py``): N points t_i = (1 + i/(N-1)
    (t_min^(1/rho) - 1))^rho from 1 to t_min, then t = 0; shape (N + 1,), from 1 down to 0.

    rho < 0 mirrors the whole |rho| grid over [0, 1] (t -> 1 - t, reversed): it still runs from 1 to 0, its
    second point is 1 - t_min and it packs points near t = 1. (`rho_time_grid` mirrors inside [t_min, 1].)
    """
    _check_grid_size(num_points, rho)
    exponent = abs(rho)
    fraction = np.arange(int(num_points)) / (int(num_points) - 1)
    times = np.append((1.0 + fraction * (t_min ** (1.0 / exponent) - 1.0)) ** exponent, 0.0)
    return 1.0 - times[::-1] if rho < 0 else times


def rho_sigma_grid(num_points: int, rho: float, sigma_min: float, sigma_max: float) -> np.ndarray:
    """The EDM (Karras) grid: sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, shape (N,)."""
    _check_grid_size(num_points, rho)
    fraction = np.linspace(0.0, 1.0, int(num_points))
    inv_rho = 1.0 / rho
    sigmas = (sigma_max**inv_rho + fraction * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    sigmas[0], sigmas[-1] = sigma_max, sigma_min
    return sigmas


def build_grid(schedule: ContinuousSchedule, num_points: int, kind: str, rho: float) -> SamplingGrid:
    """Grid of `num_points` points for `schedule`, rho-spaced in t (``kind='t'``) or in sigma (``'sigma'``)."""
    if kind == "t":
        times = rho_time_grid(num_points, rho, schedule.t_min)
        etas = schedule.eta(times)
    elif kind == "sigma":
        sigma_max = float(schedule.sigma(1.0))
        sigma_min = float(schedule.sigma(schedule.t_min))
        etas = eta_from_sigma(rho_sigma_grid(num_points, rho, sigma_min, sigma_max), schedule.kappa)
        times = schedule.t_of_eta(etas)
        times[0], times[-1] = 1.0, schedule.t_min
    else:
        raise ValueError(f"sampler option 'grid' is {kind!r}; choose one of {list(GRID_KINDS)}")
    return SamplingGrid(times=np.asarray(times, dtype=np.float64), etas=np.asarray(etas, dtype=np.float64))
