"""`basicsr node ...`: NFE plot, Table-1 sweep, Table-3 timing and checkpoint conversion commands of the
Neural-ODE family."""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="basicsr node", description="Neural-ODE SR tools (Le Scao 2020).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    plot = sub.add_parser("plot-nfe", help="plot mean training NFE with a one-std band (the paper's Fig. 3)")
    plot.add_argument("run_dirs", nargs="+", type=Path, metavar="LOGDIR",
                      help="experiment folder(s) holding nfe_train.csv or train_*.log")
    plot.add_argument("--out", type=Path, required=True, help="PNG file to write")
    plot.add_argument("--window", type=int, default=None, help="records per window (default: ~50 windows)")
    plot.add_argument("--quantity", choices=("total", "forward", "backward"), default="total",
                      help="total = forward + backward, as the reference code counts")

    sweep = sub.add_parser("sweep", help="train several option files and write one Table-1 style table")
    sweep.add_argument("option_files", nargs="+", help="option files (e.g. from `basicsr options list`)")
    sweep.add_argument("--out-dir", type=Path, default=Path("results/node_sweep"), help="where table1.md/csv go")
    sweep.add_argument("--demo", action="store_true", help="train every configuration on the demo data")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override an option in every file (repeatable), e.g. train.total_iter=100")

    table3 = sub.add_parser("table3", help="params and time/iteration of RRDB depths and the 7-conv ODE net")
    table3.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 5, 10, 20], help="RRDB depths")
    table3.add_argument("--iters", type=int, default=3, help="timed iterations per network")
    table3.add_argument("--batch", type=int, default=2, help="batch size")
    table3.add_argument("--lq-size", type=int, default=24, help="side of the random LR input in pixels")
    table3.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    table3.add_argument("--ode-solver", default="dopri5", help="solver of the ODE net")
    table3.add_argument("--ode-tol", type=float, default=1e-3, help="rtol = atol of the ODE net")
    table3.add_argument("--out-dir", type=Path, default=Path("results/node_table3"), help="where table3.md/csv go")

    convert = sub.add_parser("convert-lescao", help="a generator checkpoint of Le Scao's code as NODESRNet weights")
    convert.add_argument("checkpoint", type=Path, help="the fork's <iter>_G.pth (a bare state dict)")
    convert.add_argument("--out", type=Path, required=True, help="where to write {'params': ...} for NODESRNet")
    return parser


def _convert_lescao(args: argparse.Namespace) -> int:
    import torch
    import yaml

    from srode_node.lescao_checkpoint import convert_lescao_state_dict, lescao_network_options
    from srode_plugins import api

    converted = convert_lescao_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
    api.atomic_save({"params": converted}, args.out)
    network = lescao_network_options(converted)
    print(f"wrote {args.out}; load it with path.pretrain_network_g and this network_g:")
    print(yaml.safe_dump({"network_g": network}, sort_keys=False), end="")
    return 0


def _plot_nfe(args: argparse.Namespace) -> int:
    from srode_node.nfe_plot import plot_nfe
    from srode_node.nfe_records import read_nfe_trace

    traces = [read_nfe_trace(run_dir) for run_dir in args.run_dirs]
    out = plot_nfe(traces, args.out, window=args.window, quantity=args.quantity)
    for trace in traces:
        total = trace.nfe_total
        print(f"{trace.label}: {len(total)} iterations, NFE (fwd+bwd) mean {total.mean():.1f}, std {total.std():.1f}")
    print(f"wrote {out}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from srode_node.sweep import format_markdown, run_sweep, write_tables

    rows = run_sweep(args.option_files, overrides=args.overrides, demo=args.demo)
    markdown_path, csv_path = write_tables(rows, args.out_dir)
    print(format_markdown(rows))
    print(f"wrote {markdown_path} and {csv_path}")
    return 0 if all(row.status == "ok" for row in rows) else 1


def _table3(args: argparse.Namespace) -> int:
    from srode_node.table3 import format_table3, measure_table3, write_table3
    from srode_plugins import api

    device = api.select_device(args.device)
    rows = measure_table3(args.blocks, iterations=args.iters, batch=args.batch, lq_size=args.lq_size, device=device,
                          ode_solver=args.ode_solver, ode_tol=args.ode_tol)
    markdown_path, csv_path = write_table3(rows, args.out_dir, str(device))
    print(format_table3(rows, str(device)))
    print(f"wrote {markdown_path} and {csv_path}")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `basicsr node ARGS...`; returns the exit status."""
    args = build_parser().parse_args(argv)
    commands = {"plot-nfe": _plot_nfe, "sweep": _sweep, "table3": _table3, "convert-lescao": _convert_lescao}
    return commands[args.command](args)
