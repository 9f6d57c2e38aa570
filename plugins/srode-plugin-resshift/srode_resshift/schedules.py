"""Noise schedules of the residual-shifting chain, discrete (official ResShift) and continuous in time.

The forward marginal is q(x_t | x0, y) = N(x0 + eta(t) (y - x0), kappa^2 eta(t) I), with y the LR image
upsampled to the HR grid. Continuous time t lives in [0, 1]; the discrete step k = 0..T-1 of the official
chain sits at t = (k + 1) / T, so eta_k of the chain is eta((k + 1) / T) of a continuous schedule.
All schedule arithmetic is float64 numpy; samplers turn the numbers into tensors.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import least_squares

__all__ = [
    "ContinuousPowerSchedule",
    "ContinuousSchedule",
    "DiscretePowerSchedule",
    "ExponentialSchedule",
    "ResShiftSchedule",
    "eta_from_sigma",
    "fit_exponential_schedule",
    "max_eta_error",
    "sigma_from_eta",
]


SEED_A = 1.1113  # the seed's DEFAULT_RESSHIFT_PARAMS["a"]
SEED_ALPHA_T_PRIME = 2.3177576065063477  # its "alpha_T_prime" (T alpha_T of the official chain, float32-rounded)


def sigma_from_eta(eta: ArrayLike, kappa: float) -> np.ndarray:
    """Noise level of w = (x - eta y) / (1 - eta): sigma = kappa sqrt(eta) / (1 - eta), eta in [0, 1)."""
    eta = np.asarray(eta, dtype=np.float64)
    return kappa * np.sqrt(eta) / (1.0 - eta)


def eta_from_sigma(sigma: ArrayLike, kappa: float) -> np.ndarray:
    """Inverse of `sigma_from_eta`: the root in [0, 1) of sigma (1 - eta) = kappa sqrt(eta)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    # sqrt(eta) solves sigma s^2 + kappa s - sigma = 0; this form stays accurate as sigma -> 0.
    sqrt_eta = 2.0 * sigma / (kappa + np.sqrt(kappa**2 + 4.0 * sigma**2))
    return sqrt_eta**2


def _check_positive(value: float, option_key: str) -> float:
    if not value > 0:
        raise ValueError(f"schedule option '{option_key}' must be > 0, got {value!r}")
    return float(value)


class ResShiftSchedule(ABC):
    """A schedule of the residual-shifting chain with `num_timesteps` (T) discrete steps and noise scale kappa."""

    def __init__(self, num_timesteps: int, kappa: float) -> None:
        if int(num_timesteps) != num_timesteps or num_timesteps < 2:
            raise ValueError(f"schedule option 'num_timesteps' must be an integer >= 2, got {num_timesteps!r}")
        self.num_timesteps = int(num_timesteps)
        self.kappa = _check_positive(kappa, "kappa")

    @property
    def t_min(self) -> float:
        """Continuous time of the first discrete step, 1 / T: samplers stop there and predict x0."""
        return 1.0 / self.num_timesteps

    def grid_times(self) -> np.ndarray:
        """Continuous times (k + 1) / T of the discrete steps k = 0..T-1, shape (T,)."""
        return np.arange(1, self.num_timesteps + 1, dtype=np.float64) / self.num_timesteps

    @abstractmethod
    def grid_etas(self) -> np.ndarray:
        """eta at the discrete steps k = 0..T-1, shape (T,), increasing, in (0, 1)."""

    def grid_alphas(self) -> np.ndarray:
        """Discrete increments alpha_k = eta_k - eta_{k-1} (eta_{-1} = 0), shape (T,)."""
        return np.diff(self.grid_etas(), prepend=0.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_timesteps={self.num_timesteps}, kappa={self.kappa})"


class DiscretePowerSchedule(ResShiftSchedule):
    """The official ResShift schedule: sqrt(eta_k) = eta_s (eta_e / eta_s)^((k / (T-1))^power), k = 0..T-1.

    eta_s = min(min_noise / kappa, min_noise), eta_e = etas_end. Defaults are the x4 real-SR config
    (T=15, kappa=2, min_noise=0.04, power=0.3, etas_end=0.99): eta_0 = 0.0004, eta_14 = 0.9801.
    """

    def __init__(
        self,
        num_timesteps: int = 15,
        kappa: float = 2.0,
        min_noise: float = 0.04,
        etas_end: float = 0.99,
        power: float = 0.3,
    ) -> None:
        super().__init__(num_timesteps, kappa)
        self.min_noise = _check_positive(min_noise, "min_noise")
        self.power = _check_positive(power, "power")
        if not 0 < etas_end < 1:
            raise ValueError(f"schedule option 'etas_end' must lie in (0, 1), got {etas_end!r}")
        self.etas_end = float(etas_end)
        self.sqrt_eta_start = min(self.min_noise / self.kappa, self.min_noise)
        if not self.sqrt_eta_start < self.etas_end:
            raise ValueError(
                f"schedule option 'min_noise' ({min_noise}) gives a start noise {self.sqrt_eta_start} that is not "
                f"below 'etas_end' ({etas_end}); lower min_noise or raise etas_end"
            )

    def sqrt_eta_of_progress(self, progress: ArrayLike) -> np.ndarray:
        """sqrt(eta) as a function of the step progress u = k / (T-1) in [0, 1] (continuous in u)."""
        progress = np.asarray(progress, dtype=np.float64)
        return self.sqrt_eta_start * (self.etas_end / self.sqrt_eta_start) ** (progress**self.power)

    def grid_etas(self) -> np.ndarray:
        progress = np.linspace(0.0, 1.0, self.num_timesteps)
        return self.sqrt_eta_of_progress(progress) ** 2


class ContinuousSchedule(ResShiftSchedule):
    """A schedule defined for every t in [0, 1], with eta(0) = 0 and eta increasing."""

    alpha_bounded: bool = True  # False: alpha(t) is unbounded somewhere, so no sampler may step dt alpha(t)

    @abstractmethod
    def eta(self, t: ArrayLike) -> np.ndarray:
        """eta(t) for t in [0, 1] (same shape as t)."""

    @abstractmethod
    def alpha(self, t: ArrayLike) -> np.ndarray:
        """alpha(t) = d eta / dt, the drift rate of the forward SDE dx = alpha e0 dt + kappa sqrt(alpha) dw."""

    def t_of_eta(self, eta: ArrayLike) -> np.ndarray:
        """Inverse of eta(t) on [0, 1] by bisection (accurate to ~1e-15 in t)."""
        eta = np.asarray(eta, dtype=np.float64)
        low, high = np.zeros_like(eta), np.ones_like(eta)
        for _ in range(60):
            middle = 0.5 * (low + high)
            below = self.eta(middle) < eta
            low = np.where(below, middle, low)
            high = np.where(below, high, middle)
        return 0.5 * (low + high)

    def sigma(self, t: ArrayLike) -> np.ndarray:
        """sigma(t) = kappa sqrt(eta(t)) / (1 - eta(t)), the noise level of the EDM-form ODE."""
        return sigma_from_eta(self.eta(t), self.kappa)

    def grid_etas(self) -> np.ndarray:
        return self.eta(self.grid_times())


class ExponentialSchedule(ContinuousSchedule):
    """The seed report's schedule: alpha(t) = a (e^{lam t} - 1), eta(t) = a ((e^{lam t} - 1) / lam - t).

    Presets: ``authors`` (a=1.1113, lam = ln(1 + alpha_T' / a) = 1.1267550..., alpha_T' = 2.3177576065063477,
    exactly as the seed's code computes it) and ``report`` (a=1.111, lam=0.489, as printed in the report; 0.489
    is log10 of the right factor).
    """

    PRESETS: dict[str, tuple[float, float]] = {
        "authors": (SEED_A, math.log(1.0 + SEED_ALPHA_T_PRIME / SEED_A)),
        "report": (1.111, 0.489),
    }

    def __init__(
        self,
        a: float | None = None,
        lam: float | None = None,
        preset: str | None = None,
        num_timesteps: int = 15,
        kappa: float = 2.0,
    ) -> None:
        super().__init__(num_timesteps, kappa)
        if preset is not None:
            if preset not in self.PRESETS:
                raise ValueError(f"schedule option 'preset' is {preset!r}; choose one of {sorted(self.PRESETS)}")
            if a is not None or lam is not None:
                raise ValueError(f"schedule options 'a'/'lam' conflict with 'preset: {preset}'; give one or the other")
            a, lam = self.PRESETS[preset]
        if a is None or lam is None:
            raise ValueError("ExponentialSchedule needs 'a' and 'lam', or 'preset' (authors | report)")
        self.a = _check_positive(a, "a")
        self.lam = _check_positive(lam, "lam")
        if not self.eta(1.0) < 1:
            raise ValueError(
                f"schedule a={a}, lam={lam} gives eta(1) = {float(self.eta(1.0)):.4f} >= 1; lower a or lam"
            )

    def eta(self, t: ArrayLike) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        return self.a * (np.expm1(self.lam * t) / self.lam - t)

    def alpha(self, t: ArrayLike) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        return self.a * np.expm1(self.lam * t)

    def __repr__(self) -> str:
        return f"ExponentialSchedule(a={self.a:.4f}, lam={self.lam:.4f}, num_timesteps={self.num_timesteps})"


class ContinuousPowerSchedule(ContinuousSchedule):
    """Exact continuous extension of `DiscretePowerSchedule`: eta((k + 1) / T) equals eta_k for every k.

    On [1/T, 1], sqrt(eta(t)) = eta_s (eta_e / eta_s)^(u^power) with u = (T t - 1) / (T - 1); below 1/T,
    eta falls linearly to eta(0) = 0. alpha(t) is unbounded as t -> 1/T+ (for power < 1), which the samplers
    never need: they integrate in eta or sigma.
    """

    alpha_bounded = False

    def __init__(
        self,
        num_timesteps: int = 15,
        kappa: float = 2.0,
        min_noise: float = 0.04,
        etas_end: float = 0.99,
        power: float = 0.3,
    ) -> None:
        super().__init__(num_timesteps, kappa)
        self.discrete = DiscretePowerSchedule(num_timesteps, kappa, min_noise, etas_end, power)
        self._eta_first = self.discrete.sqrt_eta_start**2

    def _progress(self, t: np.ndarray) -> np.ndarray:
        return np.clip((self.num_timesteps * t - 1.0) / (self.num_timesteps - 1), 0.0, 1.0)

    def eta(self, t: ArrayLike) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        on_chain = self.discrete.sqrt_eta_of_progress(self._progress(t)) ** 2
        return np.where(t >= self.t_min, on_chain, self._eta_first * t * self.num_timesteps)

    def alpha(self, t: ArrayLike) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        progress = self._progress(t)
        power = self.discrete.power
        log_ratio = math.log(self.discrete.etas_end / self.discrete.sqrt_eta_start)
        with np.errstate(divide="ignore"):
            d_progress_power = power * progress ** (power - 1.0)
        # d eta / dt = 2 eta ln(eta_e / eta_s) d(u^p)/du du/dt, du/dt = T / (T - 1)
        on_chain = 2.0 * self.eta(t) * log_ratio * d_progress_power * self.num_timesteps / (self.num_timesteps - 1)
        return np.where(t >= self.t_min, on_chain, self._eta_first * self.num_timesteps)

    def t_of_eta(self, eta: ArrayLike) -> np.ndarray:
        eta = np.asarray(eta, dtype=np.float64)
        sqrt_start, sqrt_end = self.discrete.sqrt_eta_start, self.discrete.etas_end
        with np.errstate(divide="ignore", invalid="ignore"):
            exponent = np.log(np.sqrt(np.maximum(eta, self._eta_first)) / sqrt_start) / math.log(sqrt_end / sqrt_start)
            progress = np.clip(exponent, 0.0, None) ** (1.0 / self.discrete.power)
        on_chain = (progress * (self.num_timesteps - 1) + 1.0) / self.num_timesteps
        return np.where(eta >= self._eta_first, on_chain, eta / (self._eta_first * self.num_timesteps))

    def __repr__(self) -> str:
        d = self.discrete
        return (
            f"ContinuousPowerSchedule(num_timesteps={self.num_timesteps}, kappa={self.kappa}, "
            f"min_noise={d.min_noise}, etas_end={d.etas_end}, power={d.power})"
        )


def max_eta_error(schedule: ContinuousSchedule, target: ResShiftSchedule) -> float:
    """max_k |eta((k + 1) / T) - eta_k| between a continuous schedule and a chain with the same T."""
    if schedule.num_timesteps != target.num_timesteps:
        raise ValueError(
            f"cannot compare schedules with T={schedule.num_timesteps} and T={target.num_timesteps}; use the same T"
        )
    return float(np.max(np.abs(schedule.eta(target.grid_times()) - target.grid_etas())))


def fit_exponential_schedule(
    target: ResShiftSchedule, initial: tuple[float, float] = (1.1, 1.1)
) -> ExponentialSchedule:
    """Least-squares fit of (a, lam) of `ExponentialSchedule` to eta_k of `target` at t = (k + 1) / T."""
    times, etas = target.grid_times(), target.grid_etas()

    def residuals(params: np.ndarray) -> np.ndarray:
        a, lam = params
        return a * (np.expm1(lam * times) / lam - times) - etas

    fit = least_squares(residuals, np.asarray(initial, dtype=np.float64), bounds=([1e-6, 1e-6], [np.inf, np.inf]))
    a, lam = (float(v) for v in fit.x)
    return ExponentialSchedule(a=a, lam=lam, num_timesteps=target.num_timesteps, kappa=target.kappa)
