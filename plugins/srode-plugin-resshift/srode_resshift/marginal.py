"""Forward marginal of the residual-shifting chain, used to draw training inputs."""

from __future__ import annotations

from torch import Tensor

__all__ = ["q_sample"]


def q_sample(x0: Tensor, y: Tensor, eta: Tensor, kappa: float, noise: Tensor) -> Tensor:
    """Draw x_t ~ N(x0 + eta (y - x0), kappa^2 eta I) for x0, y, noise (B, C, H, W) and eta (B,)."""
    eta = eta.to(dtype=x0.dtype, device=x0.device).view(-1, *([1] * (x0.dim() - 1)))
    return x0 + eta * (y - x0) + kappa * eta.sqrt() * noise
