"""The x0 predictor: a ResShift network called with scaled input, rescaled time and the LR conditioning.

One function maps continuous time to the network's time input, used alike by training and by every sampler:
network_time = T t - 1, so the chain step k (t = (k + 1) / T) is fed as k, exactly as the official
ResShift code feeds its integer steps, and t in [1/T, 1] covers [0, T - 1] inside [0, T).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["INPUT_SCALINGS", "ResShiftDenoiser", "network_time", "scale_network_input"]

INPUT_SCALINGS = ("std", "max", "none")


def network_time(t: Tensor, num_timesteps: int) -> Tensor:
    """Network time input T t - 1 for continuous times t (B,) in [1/T, 1] -> values in [0, T - 1]."""
    return t * num_timesteps - 1.0


def scale_network_input(x: Tensor, eta: Tensor, kappa: float, scaling: str) -> Tensor:
    """Scale x (B, C, H, W) by 1 / sqrt(kappa^2 eta + 1) ('std', the official latent-space choice),
    by 1 / (3 kappa sqrt(eta) + 1) ('max', the official pixel-space choice) or not at all ('none').
    eta: (B,) tensor."""
    eta = eta.to(dtype=x.dtype, device=x.device).view(-1, *([1] * (x.dim() - 1)))
    if scaling == "std":
        return x / torch.sqrt(kappa**2 * eta + 1.0)
    if scaling == "max":
        return x / (3.0 * kappa * torch.sqrt(eta) + 1.0)
    if scaling == "none":
        return x
    raise ValueError(f"option 'resshift.input_scaling' is {scaling!r}; choose one of {list(INPUT_SCALINGS)}")


class ResShiftDenoiser:
    """Calls ``net(x_scaled, network_time, lq)`` and returns its x0 prediction (B, C, H, W).

    ``net`` follows the ResShift UNet signature forward(x (B,C,H,W), timesteps (B,), lq (B,C,h,w) | None);
    the network concatenates the (upsampled) LR image itself. ``clip_denoised``: the sampler-facing callable
    (`bind`) clamps x0_hat to [-1, 1], as the official ``p_sample_loop`` does in pixel space; training
    (`predict`) never clamps, as the official ``training_losses`` does not.
    """

    def __init__(
        self,
        net: nn.Module,
        kappa: float,
        num_timesteps: int,
        input_scaling: str = "std",
        clip_denoised: bool = False,
    ) -> None:
        if input_scaling not in INPUT_SCALINGS:
            raise ValueError(
                f"option 'resshift.input_scaling' is {input_scaling!r}; choose one of {list(INPUT_SCALINGS)}"
            )
        self.net, self.kappa, self.num_timesteps, self.input_scaling = net, kappa, num_timesteps, input_scaling
        self.clip_denoised = bool(clip_denoised)

    def predict(self, x: Tensor, t: Tensor, eta: Tensor, lq: Tensor | None) -> Tensor:
        """x0_hat for x (B, C, H, W) at per-sample times t (B,) with eta(t) (B,)."""
        scaled = scale_network_input(x, eta, self.kappa, self.input_scaling)
        return self.net(scaled, network_time(t.to(device=x.device, dtype=x.dtype), self.num_timesteps), lq)

    def bind(self, lq: Tensor | None):
        """The sampler-facing callable ``(x, t: float, eta: float) -> x0_hat`` for a fixed LR batch."""

        def denoise(x: Tensor, t: float, eta: float) -> Tensor:
            batch = x.shape[0]
            times = torch.full((batch,), t, device=x.device, dtype=x.dtype)
            etas = torch.full((batch,), eta, device=x.device, dtype=x.dtype)
            x0 = self.predict(x, times, etas, lq)
            return x0.clamp(-1.0, 1.0) if self.clip_denoised else x0

        return denoise
