"""Reference parity: each sampler option named after a reference computes what that reference's code computes.

The expected values come from second implementations written here from the references' formulas:
- official ResShift (zsyOAOA/ResShift): ``space_timesteps`` keeps steps int((T / N) x), x = 0..N-1; the respaced
  diffusion keeps sqrt_etas at those steps, recomputes etas_prev / alpha / posterior from them, starts from
  y + kappa sqrt_etas[-1] z, feeds the network the original step, and ``p_sample_loop`` clamps x0_hat to
  [-1, 1] when ``clip_denoised``;
- the continuous-time seed (daniil-shlenskii/resshift-continuous-in-time): its grid (N rho-spaced points from 1
  to 1/T, then 0; mirrored as 1 - t reversed for a reversed rho), lambda = ln(1 + alpha_T' / a), and its
  Euler / Heun steps x += h (alpha e0 - alpha kappa^2 s / 2) in t, Heun's last step plain Euler.
"""

import math

import numpy as np
import pytest
import torch
from srode_resshift.denoiser import ResShiftDenoiser
from srode_resshift.grids import rho_time_grid, seed_time_grid
from srode_resshift.samplers import DiscreteResShiftSampler, EulerSampler, HeunSampler
from srode_resshift.schedules import ContinuousPowerSchedule, DiscretePowerSchedule, ExponentialSchedule
from srode_resshift.seed_samplers import SeedEulerSampler, SeedHeunSampler
from torch import nn

KAPPA, T = 2.0, 15
SHAPE = (2, 3, 4, 4)


class OvershootingNet(nn.Module):
    """A fixed nonlinear x0 predictor whose outputs leave [-1, 1] (so clamping matters)."""

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        lq_up = torch.nn.functional.interpolate(lq, size=x.shape[-2:], mode="nearest")
        return 2.5 * torch.tanh(1.5 * x) + 0.3 * lq_up + 0.04 * timesteps.view(-1, 1, 1, 1).to(x.dtype)


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lq = torch.rand((SHAPE[0], SHAPE[1], 2, 2), generator=generator, dtype=torch.float64) * 2 - 1
    y = torch.nn.functional.interpolate(lq, size=SHAPE[-2:], mode="nearest")
    noise = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    return lq, y, noise


# ---- official ResShift: respacing, respaced chain, clip_denoised -------------------------------------------


def official_sqrt_etas(steps=T, min_noise_level=0.04, etas_end=0.99, kappa=KAPPA, power=0.3) -> np.ndarray:
    etas_start = min(min_noise_level / kappa, min_noise_level)
    increaser = math.exp(1 / (steps - 1) * math.log(etas_end / etas_start))
    power_timestep = np.linspace(0, 1, steps, endpoint=True) ** power * (steps - 1)
    return np.power(np.ones(steps) * increaser, power_timestep) * etas_start


def official_p_sample_loop(net, lq, y, noise, respacing, clip_denoised, generator) -> torch.Tensor:
    """The official respaced ancestral loop, input scaling x / sqrt(kappa^2 eta + 1), START_X prediction."""
    use_timesteps = {int((T / respacing) * x) for x in range(respacing)}
    base = official_sqrt_etas()
    timestep_map = [k for k in range(T) if k in use_timesteps]
    sqrt_etas = np.array([base[k] for k in timestep_map])
    etas = sqrt_etas**2
    etas_prev = np.append(0.0, etas[:-1])
    alpha = etas - etas_prev
    posterior_variance = KAPPA**2 * etas_prev / etas * alpha
    variance_clipped = np.append(posterior_variance[1], posterior_variance[1:]) if len(etas) > 1 else posterior_variance
    coef1, coef2 = etas_prev / etas, alpha / etas
    sample = y + KAPPA * sqrt_etas[-1] * noise
    for i in reversed(range(len(etas))):
        scaled = sample / math.sqrt(etas[i] * KAPPA**2 + 1)
        x0 = net(scaled, torch.full((sample.shape[0],), float(timestep_map[i]), dtype=sample.dtype), lq)
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
        mean = coef1[i] * sample + coef2[i] * x0
        step_noise = torch.randn(sample.shape, generator=generator, dtype=sample.dtype)
        sample = mean + (i != 0) * math.sqrt(variance_clipped[i]) * step_noise
    return sample


@pytest.mark.parametrize("num_timesteps", [4, 15, 1000])
def test_space_timesteps_respacing_keeps_the_official_steps_for_every_step_count(num_timesteps):
    counts = {1, 2, 3, 4, 5, 7, 8, num_timesteps // 3, num_timesteps - 1, num_timesteps}
    for num_steps in sorted(n for n in counts if 1 <= n <= num_timesteps):
        sampler = DiscreteResShiftSampler(num_steps, respacing="space_timesteps")
        kept = sorted({int((num_timesteps / num_steps) * x) for x in range(num_steps)})
        assert list(sampler.step_indices(DiscretePowerSchedule(num_timesteps))) == kept


def test_official_four_step_chain_visits_0_3_7_11_and_starts_from_eta_11():
    sampler = DiscreteResShiftSampler(4)  # respacing: space_timesteps is the default
    assert list(sampler.step_indices(DiscretePowerSchedule())) == [0, 3, 7, 11]
    assert list(DiscreteResShiftSampler(4, respacing="linspace").step_indices(DiscretePowerSchedule())) == [0, 5, 9, 14]
    assert official_sqrt_etas()[11] ** 2 == pytest.approx(0.5685, abs=1e-4)


@pytest.mark.parametrize("clip_denoised", [True, False])
@pytest.mark.parametrize("num_steps", [1, 2, 4, 5, 7, 15])
def test_discrete_sampler_equals_the_official_respaced_p_sample_loop(num_steps, clip_denoised):
    lq, y, noise = inputs()
    net = OvershootingNet()
    expected = official_p_sample_loop(net, lq, y, noise, num_steps, clip_denoised, torch.Generator().manual_seed(7))
    denoise = ResShiftDenoiser(net, KAPPA, T, "std", clip_denoised=clip_denoised).bind(lq)
    for schedule in (DiscretePowerSchedule(), ContinuousPowerSchedule()):
        result = DiscreteResShiftSampler(num_steps).sample(
            denoise, y, schedule, noise=noise, generator=torch.Generator().manual_seed(7)
        )
        torch.testing.assert_close(result.x0, expected, rtol=1e-12, atol=1e-12)


def test_clip_denoised_changes_the_sample_when_predictions_leave_the_range():
    lq, y, noise = inputs()
    results = [
        DiscreteResShiftSampler(15)
        .sample(
            ResShiftDenoiser(OvershootingNet(), KAPPA, T, "std", clip_denoised=clip).bind(lq),
            y,
            DiscretePowerSchedule(),
            noise=noise,
            generator=torch.Generator().manual_seed(7),
        )
        .x0
        for clip in (True, False)
    ]
    assert float(results[0].abs().max()) <= 1.0 < float(results[1].abs().max())
    assert float((results[0] - results[1]).abs().max()) > 0.1


def test_clipping_is_for_sampling_only_training_predictions_are_not_clamped():
    lq, y, noise = inputs()
    denoiser = ResShiftDenoiser(OvershootingNet(), KAPPA, T, "std", clip_denoised=True)
    raw = denoiser.predict(y + noise, torch.ones(SHAPE[0], dtype=y.dtype), torch.full((SHAPE[0],), 0.9), lq)
    assert float(raw.abs().max()) > 1.0


# ---- the continuous-time seed: lambda, grid, Euler / Heun in t -----------------------------------------------

SEED_A, SEED_ALPHA_T_PRIME = 1.1113, 2.3177576065063477


def seed_lambda() -> float:
    return math.log(1 + SEED_ALPHA_T_PRIME / SEED_A)


def seed_alpha(t: float) -> float:
    return SEED_A * (math.exp(seed_lambda() * t) - 1)


def seed_eta(t: float) -> float:
    return SEED_A * ((math.exp(seed_lambda() * t) - 1) / seed_lambda() - t)


def seed_timesteps(n_steps_plus_one: int, ro: int, reverse_ro: bool) -> list[float]:
    fraction = np.arange(n_steps_plus_one) / (n_steps_plus_one - 1)
    times = list((1 + fraction * ((1 / T) ** (1 / ro) - 1)) ** ro) + [0.0]
    return [1 - t for t in times[::-1]] if reverse_ro else times


def seed_sample(net, lq, y, noise, times, heun) -> torch.Tensor:
    def f(i, x):
        alpha, eta = seed_alpha(times[i]), seed_eta(times[i])
        timestep = torch.full((x.shape[0],), times[i], dtype=x.dtype)
        x0 = net(x / (KAPPA**2 * eta + 1) ** 0.5, timestep * T - 1, lq)
        score = -(x - x0 * (1 - eta) - eta * y) / (KAPPA**2 * eta)
        return alpha * (y - x0) - 0.5 * alpha * KAPPA**2 * score

    x = y + noise * seed_eta(times[0]) ** 0.5 * KAPPA
    for i in range(len(times) - 1):
        h = times[i + 1] - times[i]
        slope = f(i, x)
        x_inter = x + h * slope
        x = x_inter if not heun or i == len(times) - 2 else x + 0.5 * h * (slope + f(i + 1, x_inter))
    return x


def test_authors_preset_lambda_is_the_seeds_exact_value():
    schedule = ExponentialSchedule(preset="authors")
    assert schedule.lam == seed_lambda() and schedule.lam == pytest.approx(1.1267550, abs=1e-7)
    times = np.linspace(0, 1, 11)
    np.testing.assert_allclose(schedule.eta(times), [seed_eta(t) for t in times], rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(schedule.alpha(times), [seed_alpha(t) for t in times], rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("rho", [1, 4, 8, -4, -8])
@pytest.mark.parametrize("num_points", [2, 8, 15])
def test_seed_grid_equals_the_seeds_timesteps_and_ends_at_zero(num_points, rho):
    expected = seed_timesteps(num_points, abs(rho), reverse_ro=rho < 0)
    grid = seed_time_grid(num_points, rho, 1 / T)
    np.testing.assert_allclose(grid, expected, rtol=0, atol=1e-15)
    assert grid[0] == 1.0 and grid[-1] == 0.0 and grid.shape == (num_points + 1,)


def test_the_seeds_reversed_grid_mirrors_over_0_1_not_inside_t_min_1():
    seed, srode = seed_time_grid(15, -4, 1 / T), rho_time_grid(15, -4, 1 / T)
    assert seed[1] == pytest.approx(1 - 1 / T) and seed[-1] == 0.0
    assert srode[-1] == pytest.approx(1 / T)
    assert float(np.abs(seed[:-1] - srode).max()) > 0.05


@pytest.mark.parametrize("rho", [1, 4, 8, -4, -8])
@pytest.mark.parametrize("sampler_class, num_steps", [(SeedEulerSampler, 15), (SeedHeunSampler, 8)])
def test_seed_samplers_equal_the_seeds_euler_and_heun_at_nfe_15(sampler_class, num_steps, rho):
    lq, y, noise = inputs()
    net = OvershootingNet()
    sampler = sampler_class(num_steps, rho=rho)
    times = seed_timesteps(num_steps, abs(rho), reverse_ro=rho < 0)
    expected = seed_sample(net, lq, y, noise, times, heun=sampler_class is SeedHeunSampler)
    denoise = ResShiftDenoiser(net, KAPPA, T, "std").bind(lq)
    result = sampler.sample(denoise, y, ExponentialSchedule(preset="authors"), noise=noise)
    assert result.nfe == sampler.nfe() == 15
    torch.testing.assert_close(result.x0, expected, rtol=1e-11, atol=1e-11)


def test_srodes_euler_in_eta_is_not_the_seeds_euler():
    # the README used to call `EulerSampler(variable: eta)` the seed's form; it steps in eta and jumps through x0_hat
    lq, y, noise = inputs()
    net = OvershootingNet()
    denoise = ResShiftDenoiser(net, KAPPA, T, "std").bind(lq)
    schedule = ExponentialSchedule(preset="authors")
    srode = EulerSampler(15, grid="t", rho=1.0).sample(denoise, y, schedule, noise=noise).x0
    seed = SeedEulerSampler(15, rho=1.0).sample(denoise, y, schedule, noise=noise).x0
    assert float((srode - seed).abs().max()) > 1e-2


class SingularAlphaSchedule(ExponentialSchedule):
    """alpha(t) unbounded below t = 0.1, as the power schedule's is at t = 1/T from above."""

    def alpha(self, t):
        return np.where(np.asarray(t) < 0.1, np.inf, super().alpha(t))


def test_seed_samplers_refuse_a_schedule_whose_alpha_is_not_finite_where_they_step():
    with pytest.raises(ValueError, match="alpha = inf"):
        SeedEulerSampler(8).check(SingularAlphaSchedule(preset="authors"))
    with pytest.raises(ValueError, match="unbounded alpha"):
        SeedEulerSampler(8).check(ContinuousPowerSchedule())
    with pytest.raises(TypeError, match="ExponentialSchedule"):
        SeedHeunSampler(8).check(DiscretePowerSchedule())
    SeedHeunSampler(8, rho=-4).check(ExponentialSchedule(preset="authors"))


# ---- measured differences stated in the README (exact x0_hat of 1-D Gaussian data, NFE 15) --------------------

DATA_MEAN, DATA_STD, LR_VALUE = 0.3, 0.5, 0.6
ORACLE_NOISE = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64).view(-1, 1, 1, 1)


def gaussian_x0(kappa):
    def denoise(x, t, eta):
        sigma2 = kappa**2 * eta / (1 - eta) ** 2
        w = (x - eta * LR_VALUE) / (1 - eta)
        return DATA_MEAN + DATA_STD**2 / (DATA_STD**2 + sigma2) * (w - DATA_MEAN)

    return denoise


def distance_to_the_exact_flow_end(sampler) -> float:
    """max |sample - exact probability-flow ODE endpoint at t = 0| over z in [-2, 2]."""
    schedule = ExponentialSchedule(preset="authors")
    lr = torch.full_like(ORACLE_NOISE, LR_VALUE)
    eta = float(schedule.eta(1.0))
    sigma = schedule.kappa * math.sqrt(eta) / (1 - eta)
    w_start = (lr + schedule.kappa * math.sqrt(eta) * ORACLE_NOISE - eta * LR_VALUE) / (1 - eta)
    exact = DATA_MEAN + (w_start - DATA_MEAN) * DATA_STD / math.hypot(DATA_STD, sigma)
    result = sampler.sample(gaussian_x0(schedule.kappa), lr, schedule, noise=ORACLE_NOISE)
    return float((result.x0 - exact).abs().max())


@pytest.mark.parametrize(
    "sampler, distance",
    [
        (SeedEulerSampler(15, rho=1), 0.1156),
        (EulerSampler(15, grid="t", rho=1), 0.0379),
        (SeedEulerSampler(15, rho=-8), 0.2041),
        (EulerSampler(15, grid="t", rho=-8), 0.0657),
        (SeedHeunSampler(8, rho=1), 0.0018),
        (HeunSampler(8, grid="t", rho=1), 0.0457),
        (SeedHeunSampler(8, rho=8), 0.0105),
        (HeunSampler(8, grid="t", rho=8), 0.3153),
        (SeedHeunSampler(8, rho=-8), 0.2935),
        (HeunSampler(8, grid="t", rho=-8), 0.1197),
    ],
    ids=repr,
)
def test_readme_distances_of_seed_and_srode_samplers_to_the_exact_flow(sampler, distance):
    assert distance_to_the_exact_flow_end(sampler) == pytest.approx(distance, abs=1e-4)
