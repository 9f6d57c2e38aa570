"""Schedules: official values, the seed's exponential presets, the exact extension, quadrature, marginals."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from srode_resshift.marginal import q_sample
from srode_resshift.schedules import (
    ContinuousPowerSchedule,
    DiscretePowerSchedule,
    ExponentialSchedule,
    eta_from_sigma,
    fit_exponential_schedule,
    max_eta_error,
    sigma_from_eta,
)

# eta_1 .. eta_15 of the official x4 real-SR config (T=15, kappa=2, min_noise=0.04, power=0.3, etas_end=0.99),
# computed by hand from sqrt(eta_k) = 0.02 * 49.5^((k/14)^0.3) and rounded to 4 d.p.
OFFICIAL_X4_ETAS = [
    0.0004, 0.0137, 0.0311, 0.0546, 0.0850, 0.1232, 0.1700, 0.2264,
    0.2934, 0.3720, 0.4633, 0.5685, 0.6888, 0.8256, 0.9801,
]  # fmt: skip


def test_official_x4_schedule_matches_published_values_to_4_decimals():
    etas = DiscretePowerSchedule(num_timesteps=15, kappa=2.0, min_noise=0.04, etas_end=0.99, power=0.3).grid_etas()
    np.testing.assert_allclose(np.round(etas, 4), OFFICIAL_X4_ETAS, atol=0)
    assert etas[0] == pytest.approx(0.02**2, rel=1e-12)
    assert etas[-1] == pytest.approx(0.99**2, rel=1e-12)


def test_newer_t4_config_starts_at_min_noise_over_kappa():
    etas = DiscretePowerSchedule(num_timesteps=4, kappa=2.0, min_noise=0.2, etas_end=0.99, power=0.3).grid_etas()
    assert etas[0] == pytest.approx(0.1**2) and etas[-1] == pytest.approx(0.9801)
    assert np.all(np.diff(etas) > 0)


def test_authors_preset_satisfies_lambda_identity_with_discrete_last_increment():
    discrete = DiscretePowerSchedule()
    last_increment = discrete.grid_alphas()[-1]
    preset = ExponentialSchedule(preset="authors")
    assert preset.lam == pytest.approx(math.log(1.0 + discrete.num_timesteps * last_increment / preset.a), abs=5e-4)


def test_authors_preset_error_and_end_value():
    discrete = DiscretePowerSchedule()
    preset = ExponentialSchedule(preset="authors")
    assert max_eta_error(preset, discrete) == pytest.approx(0.034, abs=0.001)
    assert float(preset.eta(1.0)) == pytest.approx(0.9457, abs=1e-4)


def test_report_preset_is_far_off():
    error = max_eta_error(ExponentialSchedule(preset="report"), DiscretePowerSchedule())
    assert error == pytest.approx(0.66, abs=0.01)


def test_least_squares_fit_beats_the_authors_preset():
    discrete = DiscretePowerSchedule()
    fitted = fit_exponential_schedule(discrete)
    assert fitted.a == pytest.approx(1.098, abs=2e-3)
    assert fitted.lam == pytest.approx(1.162, abs=2e-3)
    fitted_error = max_eta_error(fitted, discrete)
    assert fitted_error < max_eta_error(ExponentialSchedule(preset="authors"), discrete)
    assert fitted_error == pytest.approx(0.004, abs=0.001)


@pytest.mark.parametrize("num_timesteps,min_noise", [(15, 0.04), (4, 0.2), (50, 0.04)])
def test_exact_extension_reproduces_every_discrete_eta(num_timesteps, min_noise):
    discrete = DiscretePowerSchedule(num_timesteps=num_timesteps, min_noise=min_noise)
    extension = ContinuousPowerSchedule(num_timesteps=num_timesteps, min_noise=min_noise)
    assert max_eta_error(extension, discrete) < 1e-15


@pytest.mark.parametrize(
    "schedule",
    [ExponentialSchedule(preset="authors"), ExponentialSchedule(preset="report"), ContinuousPowerSchedule()],
    ids=["authors", "report", "extension"],
)
def test_eta_closed_form_equals_quadrature_of_alpha(schedule):
    for t in (0.03, 1 / 15, 0.2, 0.5, 0.9, 1.0):
        points = [1 / 15] if 1 / 15 < t else None
        integral, _ = quad(lambda s: float(schedule.alpha(s)), 0.0, t, points=points, limit=200)
        assert float(schedule.eta(t)) == pytest.approx(integral, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("schedule", [ExponentialSchedule(preset="authors"), ContinuousPowerSchedule()])
def test_t_of_eta_inverts_eta(schedule):
    times = np.linspace(0.01, 1.0, 37)
    np.testing.assert_allclose(schedule.t_of_eta(schedule.eta(times)), times, atol=1e-10)


def test_sigma_and_eta_are_inverse_maps():
    etas = np.array([1e-6, 4e-4, 0.1, 0.5, 0.9801])
    np.testing.assert_allclose(eta_from_sigma(sigma_from_eta(etas, 2.0), 2.0), etas, rtol=1e-12)


def test_forward_samples_match_the_marginal_mean_and_variance():
    generator = torch.Generator().manual_seed(0)
    x0 = torch.tensor([0.3, -0.5]).view(1, 2, 1, 1).expand(200_000, 2, 1, 1)
    y = torch.tensor([0.8, 0.1]).view(1, 2, 1, 1).expand_as(x0)
    eta = torch.full((x0.shape[0],), 0.37, dtype=torch.float64)
    samples = q_sample(x0.double(), y.double(), eta, 2.0, torch.randn(x0.shape, generator=generator).double())
    expected_mean = x0[0] + 0.37 * (y[0] - x0[0])
    torch.testing.assert_close(samples.mean(0), expected_mean.double(), atol=0.01, rtol=0)
    torch.testing.assert_close(samples.var(0), torch.full_like(samples.var(0), 4 * 0.37), rtol=0.01, atol=0)


def test_forward_sde_simulation_matches_the_closed_form_marginal():
    # Euler-Maruyama on dx = alpha(t) e0 dt + kappa sqrt(alpha(t)) dw, independent of the closed form eta(t).
    schedule = ExponentialSchedule(preset="authors")
    generator = torch.Generator().manual_seed(1)
    x0, y, samples = 0.2, 0.9, torch.full((40_000,), 0.2, dtype=torch.float64)
    times = np.linspace(0.0, 1.0, 201)
    for start, end in zip(times[:-1], times[1:]):
        rate = float(schedule.alpha(0.5 * (start + end)))
        step = end - start
        noise = torch.randn(samples.shape, generator=generator, dtype=torch.float64)
        samples = samples + rate * (y - x0) * step + schedule.kappa * math.sqrt(rate * step) * noise
    eta_end = float(schedule.eta(1.0))
    assert float(samples.mean()) == pytest.approx(x0 + eta_end * (y - x0), abs=0.04)
    assert float(samples.var()) == pytest.approx(schedule.kappa**2 * eta_end, rel=0.025)


def test_bad_schedule_options_name_the_key():
    with pytest.raises(ValueError, match="'preset'"):
        ExponentialSchedule(preset="nope")
    with pytest.raises(ValueError, match="'etas_end'"):
        DiscretePowerSchedule(etas_end=1.5)
    with pytest.raises(ValueError, match="eta\\(1\\)"):
        ExponentialSchedule(a=3.0, lam=2.0)
