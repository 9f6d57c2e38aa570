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

    samplers = [EulerSampler(5), HeunSampler(5), DPMSolverPP2MSampler(5), DiscreteResShiftSampler(15)]
    expected_nfe = [5, 9, 5, 15]
    for sampler, nfe in zip(samplers, expected_nfe):
        result = sampler.sample(point_mass, lr, extension, generator=torch.Generator().manual_seed(0))
        assert result.nfe == sampler.nfe() == nfe, f"{sampler!r}: NFE {result.nfe}, expected {nfe}"
        error = float((result.x0 - 0.25).abs().max())
        assert error < 1e-12 and math.isfinite(error), f"{sampler!r} misses the point mass by {error}"
    return (
        f"schedules ok (authors' preset max|eta err| {preset_error:.4f}, LS fit {fitted_error:.4f}, extension exact); "
        f"{len(samplers)} samplers land on a point mass with NFE {expected_nfe}"
    )
