"""`basicsr plugins check srode-plugin-resshift`: fast numerical checks of schedules and samplers (CPU, < 1 s)."""

from __future__ import annotations

import math


def run() -> str:
    """Raise AssertionError on a failed check; return a one-line summary."""
    import torch

    from .samplers import DiscreteResShiftSampler, DPMSolverPP2MSampler, EulerSampler, HeunSampler
    from .schedules import (
        ContinuousPowerSchedule,
        DiscretePowerSchedule,
        ExponentialSchedule,
        fit_exponential_schedule,
        max_eta_error,
    )

    discrete = DiscretePowerSchedule()
    etas = discrete.grid_etas()
    assert round(float(etas[0]), 4) == 0.0004 and round(float(etas[-1]), 4) == 0.9801, f"official etas {etas}"
    preset_error = max_eta_error(ExponentialSchedule(preset="authors"), discrete)
    assert abs(preset_error - 0.034) <= 0.001, f"authors' preset max |eta error| {preset_error:.4f}, expected 0.034"
    fitted_error = max_eta_error(fit_exponential_schedule(discrete), discrete)
    assert fitted_error < preset_error, f"least-squares fit error {fitted_error:.4f} not below {preset_error:.4f}"
    extension = ContinuousPowerSchedule()
    assert max_eta_error(extension, discrete) < 1e-15, "exact extension misses a discrete eta"

    lr = torch.full((4, 1, 2, 2), 0.6, dtype=torch.float64)

    def point_mass(x: torch.Tensor, t: float, eta: float) -> torch.Tensor:
        return torch.full_like(x, 0.25)

    noise = torch.randn(lr.shape, generator=torch.Generator().manual_seed(0), dtype=lr.dtype)
    samplers = [EulerSampler(5), HeunSampler(5), DPMSolverPP2MSampler(5), DiscreteResShiftSampler(15)]
    expected_nfe = [5, 9, 5, 15]
    for sampler, nfe in zip(samplers, expected_nfe):
        result = sampler.sample(point_mass, lr, extension, noise=noise, generator=torch.Generator().manual_seed(0))
        assert result.nfe == sampler.nfe() == nfe, f"{sampler!r}: NFE {result.nfe}, expected {nfe}"
        error = float((result.x0 - 0.25).abs().max())
        assert error < 1e-12 and math.isfinite(error), f"{sampler!r} misses the point mass by {error}"
        if not isinstance(sampler, DiscreteResShiftSampler):
            # the state before the x0 jump: exact for the w-in-sigma solvers, within the prior noise for Euler in eta
            grid = sampler.build_grid(extension)
            sigmas = grid.sigmas(extension.kappa)
            w_start = (lr * (1 - grid.etas[0]) + extension.kappa * math.sqrt(grid.etas[0]) * noise) / (1 - grid.etas[0])
            w_end = 0.25 + (w_start - 0.25) * sigmas[-1] / sigmas[0]
            exact = (1 - grid.etas[-1]) * w_end + grid.etas[-1] * lr
            miss = float((result.last_state - exact).abs().max())
            bound = (
                1e-9
                if isinstance(sampler, (HeunSampler, DPMSolverPP2MSampler))
                else float((extension.kappa * math.sqrt(grid.etas[0]) * noise).abs().max())
            )
            assert miss < bound, f"{sampler!r}: last state misses the exact flow by {miss:.3g} (bound {bound:.3g})"
    return (
        f"schedules ok (authors' preset max|eta err| {preset_error:.4f}, LS fit {fitted_error:.4f}, extension exact); "
        f"{len(samplers)} samplers land on a point mass with NFE {expected_nfe}, ODE states follow the exact flow"
    )
