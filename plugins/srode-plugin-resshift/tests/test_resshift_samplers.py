"""Samplers against oracles: point-mass and 1-D Gaussian data with the exact posterior mean as 'network'."""

import math

import numpy as np
import pytest
import torch
from srode_resshift.grids import SamplingGrid, build_grid, rho_sigma_grid, rho_time_grid
from srode_resshift.samplers import (
    HEUN_ETA_MIN_RATIO,
    DiscreteResShiftSampler,
    DPMSolverPP2MSampler,
    EulerMaruyamaSampler,
    EulerSampler,
    HeunSampler,
    heun_eta_noise_gain,
)
from srode_resshift.schedules import ContinuousPowerSchedule, DiscretePowerSchedule, ExponentialSchedule, sigma_from_eta

SCHEDULE = ContinuousPowerSchedule()  # the official x4 chain, extended exactly to continuous time
DATA_MEAN, DATA_STD, LR_VALUE = 0.3, 0.5, 0.6  # x0 ~ N(0.3, 0.5^2); the upsampled LR pixel y = 0.6
POINT_MASS = 0.25


def gaussian_posterior_mean(kappa: float):
    """E[x0 | x at eta] for x0 ~ N(DATA_MEAN, DATA_STD^2): w = (x - eta y)/(1 - eta) = x0 + sigma z."""

    def denoise(x, t, eta):
        sigma = float(sigma_from_eta(eta, kappa))
        w = (x - eta * LR_VALUE) / (1.0 - eta)
        return DATA_MEAN + DATA_STD**2 / (DATA_STD**2 + sigma**2) * (w - DATA_MEAN)

    return denoise


def point_mass_oracle(x, t, eta):
    return torch.full_like(x, POINT_MASS)


def exact_gaussian_ode_end(grid, kappa, x_start):
    """Closed-form ODE flow for Gaussian data: (w - mean) / sqrt(std^2 + sigma^2) is constant along a path."""
    sigma_start, sigma_end = (float(sigma_from_eta(grid.etas[i], kappa)) for i in (0, -1))
    w_start = (x_start - grid.etas[0] * LR_VALUE) / (1.0 - grid.etas[0])
    w_end = DATA_MEAN + (w_start - DATA_MEAN) * math.hypot(DATA_STD, sigma_end) / math.hypot(DATA_STD, sigma_start)
    return (1.0 - grid.etas[-1]) * w_end + grid.etas[-1] * LR_VALUE


def exact_point_mass_ode_end(grid, kappa, x_start):
    """Closed-form ODE flow for a point mass: w - x0 shrinks in proportion to sigma."""
    sigma_start, sigma_end = (float(sigma_from_eta(grid.etas[i], kappa)) for i in (0, -1))
    w_start = (x_start - grid.etas[0] * LR_VALUE) / (1.0 - grid.etas[0])
    w_end = POINT_MASS + (w_start - POINT_MASS) * sigma_end / sigma_start
    return (1.0 - grid.etas[-1]) * w_end + grid.etas[-1] * LR_VALUE


NOISE = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64).view(-1, 1, 1, 1)
LR = torch.full_like(NOISE, LR_VALUE)
PRIOR_NOISE = SCHEDULE.kappa * math.sqrt(float(SCHEDULE.eta(1.0))) * float(NOISE.abs().max())  # largest at t = 1


def last_state_error(sampler, denoise, exact_end, schedule=SCHEDULE):
    result = sampler.sample(denoise, LR, schedule, noise=NOISE)
    grid = sampler.build_grid(schedule)
    x_start = LR + schedule.kappa * math.sqrt(grid.etas[0]) * NOISE
    return float((result.last_state - exact_end(grid, schedule.kappa, x_start)).abs().max())


def observed_orders(make_sampler, denoise, exact_end, sizes=(32, 64, 128)):
    errors = [last_state_error(make_sampler(n), denoise, exact_end) for n in sizes]
    return [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]


ODE_SAMPLERS = {
    "euler-t": lambda n: EulerSampler(n, grid="t", rho=1.0),  # Euler: x in eta by default
    "euler-sigma": lambda n: EulerSampler(n, grid="sigma", rho=7.0),
    "heun-t": lambda n: HeunSampler(n, grid="t", rho=2.0),  # Heun: w in sigma by default (EDM's form)
    "heun-t-mirrored": lambda n: HeunSampler(n, grid="t", rho=-2.0),
    "heun-sigma": lambda n: HeunSampler(n, grid="sigma", rho=7.0),
    "heun-t-eta": lambda n: HeunSampler(n, grid="t", rho=2.0, variable="eta"),  # stable from n = 18 on
    "heun-sigma-eta": lambda n: HeunSampler(n, grid="sigma", rho=7.0, variable="eta"),  # stable from n = 11 on
    "dpmpp2m-sigma": lambda n: DPMSolverPP2MSampler(n, grid="sigma", rho=7.0),
}
EXPECTED_ORDER = {
    "euler-t": 1, "euler-sigma": 1, "heun-t": 2, "heun-t-mirrored": 2, "heun-sigma": 2, "heun-t-eta": 2,
    "heun-sigma-eta": 2, "dpmpp2m-sigma": 2,
}  # fmt: skip
HEUN_IN_ETA = ("heun-t-eta", "heun-sigma-eta")


ALL_SAMPLERS = {
    **{name: make(8) for name, make in ODE_SAMPLERS.items() if name not in HEUN_IN_ETA},
    **{name: ODE_SAMPLERS[name](32) for name in HEUN_IN_ETA},
    "euler-maruyama": EulerMaruyamaSampler(8),
    "discrete": DiscreteResShiftSampler(15),
}


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_every_sampler_lands_on_a_point_mass(name):
    result = ALL_SAMPLERS[name].sample(point_mass_oracle, LR, SCHEDULE, noise=NOISE)
    torch.testing.assert_close(result.x0, torch.full_like(LR, POINT_MASS))


@pytest.mark.parametrize("name", ["euler-t", "euler-sigma", "heun-t-eta", "heun-sigma-eta"])
def test_point_mass_eta_form_error_decreases_with_nfe(name):
    # the last state before the x0 jump, against the closed-form flow; x0 itself is exact for any NFE
    sizes = (32, 64, 128) if name in HEUN_IN_ETA else (8, 32, 128)
    errors = [last_state_error(ODE_SAMPLERS[name](n), point_mass_oracle, exact_point_mass_ode_end) for n in sizes]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < errors[0] / 5


@pytest.mark.parametrize("name", ["euler-sigma", "heun-sigma-eta"])
def test_point_mass_error_shrinks_at_the_solver_order(name):
    # on a point mass the eta-form flow x - x0 = eta e0 + c sqrt(eta) is singular at eta = 0: the order shows
    # on the Karras grid, which refines there (a uniform t grid stays pre-asymptotic up to N = 256)
    orders = observed_orders(ODE_SAMPLERS[name], point_mass_oracle, exact_point_mass_ode_end)
    assert orders[-1] == pytest.approx(EXPECTED_ORDER[name], abs=0.25)


def test_exponential_integrator_and_sigma_space_euler_are_exact_on_a_point_mass():
    # in w-sigma coordinates the point-mass flow is linear in sigma: Euler (DDIM), Heun and DPM-Solver are exact
    for sampler in (
        DPMSolverPP2MSampler(4),
        EulerSampler(4, grid="sigma", rho=7.0, variable="sigma"),
        HeunSampler(4, grid="t", rho=1.0, variable="sigma"),
        HeunSampler(4, grid="t", rho=-2.0),
        HeunSampler(2, grid="sigma", rho=7.0),
    ):
        assert last_state_error(sampler, point_mass_oracle, exact_point_mass_ode_end) < 1e-9  # round-off at sigma 99


@pytest.mark.parametrize("num_steps", [3, 4, 8])
@pytest.mark.parametrize("grid, rho", [("t", 1.0), ("t", 2.0), ("t", -2.0), ("sigma", 7.0)])
def test_no_sampler_ends_further_from_the_flow_than_the_prior_noise(grid, rho, num_steps):
    # property: with x0_hat fixed, a stable solver shrinks the noise; the last state may miss the exact flow by
    # less than the noise it started with (kappa sqrt(eta(1)) |z|). The seed's Heun in eta broke this by ~10x.
    for sampler in (
        EulerSampler(num_steps, grid=grid, rho=rho),
        EulerSampler(num_steps, grid=grid, rho=rho, variable="sigma"),
        HeunSampler(num_steps, grid=grid, rho=rho),
        DPMSolverPP2MSampler(num_steps, grid=grid, rho=rho),
    ):
        assert last_state_error(sampler, point_mass_oracle, exact_point_mass_ode_end) < PRIOR_NOISE, sampler


@pytest.mark.parametrize("ratio", [0.5, 0.2, 0.08])
def test_heun_eta_noise_gain_is_one_heun_step_on_a_fixed_x0(ratio):
    # one predictor-corrector step in eta from eta0 to ratio * eta0 with x0_hat fixed: the eta e0 part of
    # x - x0_hat is carried exactly, the noise part is multiplied by the closed-form gain
    eta0 = 0.2
    grid = SamplingGrid(times=np.array([0.5, 0.4]), etas=np.array([eta0, ratio * eta0]))
    noise = NOISE * SCHEDULE.kappa * math.sqrt(eta0)
    x = POINT_MASS + eta0 * (LR - POINT_MASS) + noise
    sampler = HeunSampler(2, variable="eta")
    end = sampler._integrate(point_mass_oracle, LR, SCHEDULE.kappa, grid, x, None)
    remaining_noise = end - POINT_MASS - ratio * eta0 * (LR - POINT_MASS)
    torch.testing.assert_close(remaining_noise, float(heun_eta_noise_gain(ratio)) * noise)
    assert abs(heun_eta_noise_gain(HEUN_ETA_MIN_RATIO)) == pytest.approx(1.0)


def test_heun_in_eta_refuses_grids_where_it_amplifies_the_noise(monkeypatch):
    # the uniform t grid's last step at 8 points goes from eta 0.031 to 0.0004 (ratio 0.013)
    sampler = HeunSampler(8, grid="t", rho=1.0, variable="eta")
    with pytest.raises(
        ValueError,
        match=r"variable: eta is unstable .*\(ratio 0\.0129 < 0\.0704\) multiplies the remaining noise by -8\.96 "
        r"instead of 0\.113.*variable: sigma",
    ):
        sampler.sample(point_mass_oracle, LR, SCHEDULE, noise=NOISE)
    # what the refusal prevents: run anyway, and the last state lands further from the exact flow than the
    # prior noise; EDM's form on the same grid is exact
    monkeypatch.setattr(HeunSampler, "check_grid", lambda self, grid: None)
    assert last_state_error(sampler, point_mass_oracle, exact_point_mass_ode_end) > PRIOR_NOISE
    sigma_form = HeunSampler(8, grid="t", rho=1.0)
    assert last_state_error(sigma_form, point_mass_oracle, exact_point_mass_ode_end) < 1e-12


@pytest.mark.parametrize("name", list(ODE_SAMPLERS))
def test_gaussian_flow_error_shrinks_at_the_solver_order(name):
    orders = observed_orders(ODE_SAMPLERS[name], gaussian_posterior_mean(SCHEDULE.kappa), exact_gaussian_ode_end)
    assert orders[-1] == pytest.approx(EXPECTED_ORDER[name], abs=0.25)


def target_sample_std(schedule):
    # the returned x0_hat is E[x0 | x at t_min]: its std is DATA_STD^2 / sqrt(DATA_STD^2 + sigma_min^2)
    sigma_min = float(sigma_from_eta(schedule.grid_etas()[0], schedule.kappa))
    return DATA_STD**2 / math.hypot(DATA_STD, sigma_min)


@pytest.mark.parametrize(
    "sampler",
    [
        EulerSampler(100, grid="t", rho=1.0),
        HeunSampler(40, grid="t", rho=1.0),
        HeunSampler(64, grid="t", rho=1.0, variable="eta"),
        DPMSolverPP2MSampler(40, grid="sigma", rho=7.0),
        EulerMaruyamaSampler(200, grid="t", rho=1.0),
    ],
    ids=["euler", "heun", "heun-eta", "dpmpp2m", "euler-maruyama"],
)
def test_gaussian_data_sampled_std_within_two_percent(sampler):
    generator = torch.Generator().manual_seed(0)
    lr = torch.full((20_000, 1, 1, 1), LR_VALUE, dtype=torch.float64)
    result = sampler.sample(gaussian_posterior_mean(SCHEDULE.kappa), lr, SCHEDULE, generator=generator)
    assert float(result.x0.std()) == pytest.approx(target_sample_std(SCHEDULE), rel=0.02)
    assert float(result.x0.mean()) == pytest.approx(DATA_MEAN, abs=0.02)


def discrete_sampler_gaussian_output_std(schedule):
    """Second implementation: the plug-in ancestral chain is linear-Gaussian, so its output variance follows
    V_{k-1} = A_k^2 V_k + c_k^2 with x_{k-1} = A_k x_k + const + c_k z, and x0_hat = g_0 x_0 + const at the end."""
    etas, kappa = schedule.grid_etas(), schedule.kappa

    def posterior_gain(eta):  # d x0_hat / d x
        sigma2 = kappa**2 * eta / (1 - eta) ** 2
        return DATA_STD**2 / (DATA_STD**2 + sigma2) / (1 - eta)

    variance = kappa**2 * etas[-1]
    for k in range(len(etas) - 1, 0, -1):
        eta, eta_prev = etas[k], etas[k - 1]
        alpha = eta - eta_prev
        gain = eta_prev / eta + alpha / eta * posterior_gain(eta)
        variance = gain**2 * variance + kappa**2 * eta_prev / eta * alpha
    return posterior_gain(etas[0]) * math.sqrt(variance)


@pytest.mark.parametrize("num_timesteps", [4, 15])
def test_discrete_sampler_std_matches_the_linear_gaussian_recursion(num_timesteps):
    schedule = DiscretePowerSchedule(num_timesteps=num_timesteps, min_noise=0.2 if num_timesteps == 4 else 0.04)
    lr = torch.full((20_000, 1, 1, 1), LR_VALUE, dtype=torch.float64)
    result = DiscreteResShiftSampler(num_timesteps).sample(
        gaussian_posterior_mean(schedule.kappa), lr, schedule, generator=torch.Generator().manual_seed(3)
    )
    assert float(result.x0.std()) == pytest.approx(discrete_sampler_gaussian_output_std(schedule), rel=0.02)


@pytest.mark.parametrize("num_steps", [2, 5, 15])
def test_nfe_counts_euler_n_heun_2n_minus_1_and_match_the_calls(num_steps):
    expected = {
        EulerSampler(num_steps): num_steps,
        HeunSampler(num_steps): 2 * num_steps - 1,
        EulerMaruyamaSampler(num_steps): num_steps,
        DPMSolverPP2MSampler(num_steps): num_steps,
        DiscreteResShiftSampler(num_steps): num_steps,
    }
    for sampler, nfe in expected.items():
        assert sampler.nfe() == nfe
        assert sampler.sample(point_mass_oracle, LR, SCHEDULE, noise=NOISE).nfe == nfe


def test_discrete_sampler_linspace_respacing_keeps_both_chain_ends():
    indices = DiscreteResShiftSampler(4, respacing="linspace").step_indices(DiscretePowerSchedule())
    np.testing.assert_array_equal(indices, [0, 5, 9, 14])


def test_rho_time_grid_follows_the_seeds_formula_and_mirrors_inside_t_min_to_1():
    grid = rho_time_grid(5, 2.0, 1 / 15)
    expected = [(1 + i / 4 * ((1 / 15) ** 0.5 - 1)) ** 2 for i in range(5)]
    np.testing.assert_allclose(grid, expected, rtol=1e-12)
    mirrored = rho_time_grid(5, -2.0, 1 / 15)
    np.testing.assert_allclose(mirrored, (1 + 1 / 15 - grid)[::-1], rtol=1e-12)
    assert mirrored[0] == 1.0 and mirrored[-1] == pytest.approx(1 / 15)
    assert np.all(np.diff(mirrored) < 0)
    # rho > 1 packs the points near t_min, the mirrored grid near t = 1
    assert grid[-2] - grid[-1] < grid[0] - grid[1] and mirrored[0] - mirrored[1] < mirrored[-2] - mirrored[-1]


def test_sigma_grid_is_karras_and_maps_back_to_schedule_times():
    schedule = ExponentialSchedule(preset="authors")
    grid = build_grid(schedule, 6, "sigma", 7.0)
    sigmas = rho_sigma_grid(6, 7.0, float(schedule.sigma(schedule.t_min)), float(schedule.sigma(1.0)))
    np.testing.assert_allclose(grid.sigmas(schedule.kappa), sigmas, rtol=1e-9)
    np.testing.assert_allclose(schedule.eta(grid.times), grid.etas, rtol=1e-9, atol=1e-12)
    assert grid.times[0] == 1.0 and grid.times[-1] == pytest.approx(1 / 15)


def test_ode_samplers_refuse_a_discrete_schedule_with_the_fix():
    with pytest.raises(TypeError, match="ContinuousPowerSchedule"):
        HeunSampler(4).sample(point_mass_oracle, LR, DiscretePowerSchedule(), noise=NOISE)


def test_bad_sampler_options_name_the_key():
    with pytest.raises(ValueError, match="'grid'"):
        EulerSampler(4, grid="log")
    with pytest.raises(ValueError, match="'variable'"):
        HeunSampler(4, variable="t")
    with pytest.raises(ValueError, match="'num_steps'"):
        DiscreteResShiftSampler(20).sample(point_mass_oracle, LR, DiscretePowerSchedule(), noise=NOISE)
