"""`basicsr resshift ...`: schedule tools of the ResShift plugin.

basicsr resshift fit-schedule --T 15 --kappa 2 --min-noise 0.04 --etas-end 0.99 --power 0.3
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="basicsr resshift", description="ResShift schedule tools")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser(
        "fit-schedule",
        help="least-squares fit of the exponential schedule (a, lambda) to the official power schedule",
        description="Fit eta(t) = a ((e^{lambda t} - 1) / lambda - t) to the official discrete schedule at t = k/T "
        "and compare it with the authors' preset (1.1113, 1.1268) and the report's values (1.111, 0.489).",
    )
    fit.add_argument("--T", dest="num_timesteps", type=int, default=15, help="number of discrete steps (default 15)")
    fit.add_argument("--kappa", type=float, default=2.0, help="noise scale kappa (default 2)")
    fit.add_argument("--min-noise", type=float, default=0.04, help="official min_noise_level (default 0.04)")
    fit.add_argument("--etas-end", type=float, default=0.99, help="official etas_end = sqrt(eta_T) (default 0.99)")
    fit.add_argument("--power", type=float, default=0.3, help="official schedule power p (default 0.3)")
    return parser


def fit_schedule_report(num_timesteps: int, kappa: float, min_noise: float, etas_end: float, power: float) -> str:
    """The side-by-side table printed by `fit-schedule`."""
    from .schedules import DiscretePowerSchedule, ExponentialSchedule, fit_exponential_schedule, max_eta_error

    discrete = DiscretePowerSchedule(num_timesteps, kappa, min_noise, etas_end, power)
    candidates = {
        "least-squares fit": fit_exponential_schedule(discrete),
        "authors' preset": ExponentialSchedule(preset="authors", num_timesteps=num_timesteps, kappa=kappa),
        "report's values": ExponentialSchedule(preset="report", num_timesteps=num_timesteps, kappa=kappa),
    }
    last_increment = float(discrete.grid_alphas()[-1])
    lines = [
        f"Exponential schedule vs the official power schedule (T={num_timesteps}, kappa={kappa:g}, "
        f"min_noise={min_noise:g}, etas_end={etas_end:g}, power={power:g})",
        f"discrete chain: eta_1 = {discrete.grid_etas()[0]:.4f}, eta_T = {discrete.grid_etas()[-1]:.4f}, "
        f"T * alpha_T = {num_timesteps * last_increment:.5f}",
        "",
        f"{'schedule':<20}{'a':>9}{'lambda':>9}{'max|eta err|':>15}{'eta(1)':>9}",
    ]
    for name, schedule in candidates.items():
        error = max_eta_error(schedule, discrete)
        lines.append(f"{name:<20}{schedule.a:>9.4f}{schedule.lam:>9.4f}{error:>15.4f}{float(schedule.eta(1.0)):>9.4f}")
    lines.append(f"{'discrete (target)':<20}{'-':>9}{'-':>9}{0.0:>15.4f}{discrete.grid_etas()[-1]:>9.4f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of `basicsr resshift ARGS...`; returns the exit status."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.command == "fit-schedule":
        try:
            report = fit_schedule_report(args.num_timesteps, args.kappa, args.min_noise, args.etas_end, args.power)
        except ValueError as error:
            print(f"basicsr resshift fit-schedule: {error}")
            return 2
        print(report)
    return 0
