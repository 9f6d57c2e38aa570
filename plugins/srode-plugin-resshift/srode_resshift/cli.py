"""`basicsr resshift ...`: schedule tools and the seed report's sampler table of the ResShift plugin.

basicsr resshift fit-schedule --T 15 --kappa 2 --min-noise 0.04 --etas-end 0.99 --power 0.3
basicsr resshift sweep -opt resshift_x4_demo.yml [--demo] [--set KEY=VALUE] [--no-lpips]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="basicsr resshift", description="ResShift schedule and sampler tools")
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
    add_sweep_parser(commands)
    return parser


def add_sweep_parser(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="the continuous-time seed report's Table 1: seed Euler / Heun x rho {1, 4, 8, -4, -8} at NFE 15",
        description="Rerun the seed report's Table 1 protocol on an option file's model: Baseline (official "
        "discrete sampler on the option's schedule) and the seed's own Euler / Heun samplers on its exponential "
        "schedule (preset authors, same T and kappa), rho in 1, 4, 8, -4, -8, 15 network calls per image; "
        "LPIPS / SSIM / PSNR per row. Prints the table and writes a Markdown copy and a PNG (quality vs rho).",
    )
    sweep.add_argument("-opt", "--opt", required=True, help="option file of a ContinuousResShiftModel "
                       "(trained weights via path.pretrain_network_g)")
    sweep.add_argument("--demo", action="store_true", help="use the embedded demo data instead of the datasets")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override an option (repeatable)")
    sweep.add_argument("--nfe", type=int, default=15, help="network calls per image of every row (report: 15)")
    sweep.add_argument("--no-lpips", action="store_true", help="skip LPIPS (needs no backbone weights)")
    sweep.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default alex)")
    sweep.add_argument("--lpips-backbone", default=None, metavar="PATH",
                       help="LPIPS backbone weights file (default: the torch cache, `basicsr weights fetch alexnet`)")
    sweep.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images per dataset")
    sweep.add_argument("--crop", type=int, default=None, metavar="PIXELS",
                       help="centre-crop every LR image to PIXELS x PIXELS (quick smoke runs)")
    sweep.add_argument("--seed", type=int, default=0, help="noise seed, the same for every row (default 0)")


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
    elif args.command == "sweep":
        return sweep_command(args)
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    """`basicsr resshift sweep`: one-line errors (missing LPIPS weights name `basicsr weights fetch` and --no-lpips)."""
    from srode_plugins import api

    from .seed_report_run import run_seed_report

    for flag, value in (("--nfe", args.nfe), ("--max-images", args.max_images), ("--crop", args.crop)):
        if value is not None and value < 1:
            print(f"basicsr resshift sweep: {flag} is {value}; give a whole number >= 1")
            return 2
    try:
        run_seed_report(
            args.opt, overrides=args.overrides, demo=args.demo, nfe=args.nfe, lpips=not args.no_lpips,
            lpips_net=args.lpips_net, lpips_backbone=args.lpips_backbone, max_images=args.max_images,
            crop=args.crop, seed=args.seed, root=Path.cwd(),
        )
    except api.SrodeError as error:
        print(f"basicsr resshift sweep: {error}")
        return 2
    return 0
