"""What one training step feeds the network: times, forward samples and the x0 prediction (no BasicSR here)."""

from __future__ import annotations

import torch
from torch import Tensor

from .denoiser import ResShiftDenoiser
from .marginal import q_sample
from .schedules import ContinuousSchedule, ResShiftSchedule

__all__ = ["TIME_SAMPLINGS", "draw_training_times", "predict_x0_on_forward_samples"]

TIME_SAMPLINGS = ("continuous", "discrete")


def draw_training_times(
    schedule: ResShiftSchedule, batch: int, time_sampling: str, device: torch.device | str
) -> tuple[Tensor, Tensor]:
    """Times t (B,) and eta(t) (B,): continuous t ~ U(1/T, 1), or chain steps k ~ U{0..T-1} at t = (k + 1) / T."""
    steps = schedule.num_timesteps
    if time_sampling == "continuous":
        if not isinstance(schedule, ContinuousSchedule):
            raise TypeError(f"continuous time sampling needs a continuous schedule, got {type(schedule).__name__}")
        t = torch.empty(batch, dtype=torch.float64).uniform_(1.0 / steps, 1.0)
        eta = torch.from_numpy(schedule.eta(t.numpy()))
    elif time_sampling == "discrete":
        k = torch.randint(0, steps, (batch,))
        t = (k + 1).double() / steps
        eta = torch.from_numpy(schedule.grid_etas())[k]
    else:
        raise ValueError(f"time sampling is {time_sampling!r}; choose one of {list(TIME_SAMPLINGS)}")
    return t.float().to(device), eta.float().to(device)


def predict_x0_on_forward_samples(
    denoiser: ResShiftDenoiser, schedule: ResShiftSchedule, x0: Tensor, y: Tensor, lq: Tensor, time_sampling: str
) -> Tensor:
    """Draw t, x_t ~ q(x_t | x0, y) for x0, y (B, C, H, W) and return the network's x0 prediction (B, C, H, W).

    lq: the conditioning LR image (B, 3, h, w) in [-1, 1]."""
    t, eta = draw_training_times(schedule, x0.shape[0], time_sampling, x0.device)
    x_t = q_sample(x0, y, eta, schedule.kappa, torch.randn_like(x0))
    return denoiser.predict(x_t, t, eta, lq)
