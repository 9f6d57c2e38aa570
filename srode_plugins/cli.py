"""The `basicsr` command (also `python -m srode_plugins`).

Discovery commands (`--help`, `plugins list`, `options list`) import neither torch nor any plugin.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from srode_plugins import __version__
from srode_plugins.discovery import CORE_COMMANDS, catalog
from srode_plugins.errors import SrodeError


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-opt", "--opt", required=True, help="path to the YAML option file")
    parser.add_argument("--demo", action="store_true", help="use the embedded demo data instead of the datasets")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override an option, e.g. --set train.total_iter=100 (repeatable)")
    parser.add_argument("--force_yml", nargs="+", default=[], metavar="KEY:PATH=VALUE",
                        help="BasicSR-style overrides (train:total_iter=100); same as --set")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="basicsr",
        description="srode: BasicSR training/testing with plugin model families.",
        epilog="Plugin commands: " + (", ".join(sorted(_plugin_commands())) or "(none installed)"),
    )
    parser.add_argument("--version", action="version", version=f"srode-plugins {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train a model from an option file")
    _add_run_arguments(train)
    train.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                       help="'pytorch' under torchrun for DDP (nccl with CUDA, gloo without)")
    train.add_argument("--auto_resume", "--auto-resume", action="store_true",
                       help="resume from the newest training state of this experiment")
    train.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)

    test = sub.add_parser("test", help="evaluate a model from an option file")
    _add_run_arguments(test)
    test.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (x8 cost)")

    infer = sub.add_parser("infer", help="upsample images with a trained model")
    infer.add_argument("-opt", "--opt", help="option file whose network_g / path.pretrain_network_g to use")
    infer.add_argument("--arch", help="arch name, when --weights alone is not recognised, e.g. EDSR")
    infer.add_argument("--arch-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="arch constructor argument (repeatable), e.g. --arch-opt num_block=16")
    infer.add_argument("--weights", help="checkpoint (.pth / .safetensors; params_ema, else params); alone, the "
                       "arch is recognised from it (srode plugins' detectors, then spandrel)")
    infer.add_argument("--scale", type=int, help="upscaling factor (default: the option's scale or 4)")
    infer.add_argument("--input", required=True, help="image file or folder")
    infer.add_argument("--output", required=True, help="output folder")
    infer.add_argument("--tile", type=int, default=0, help="tile size in LR pixels (0: whole image)")
    infer.add_argument("--overlap", type=int, default=16, help="tile overlap in LR pixels")
    infer.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations")
    infer.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, ...")

    evaluate = sub.add_parser(
        "evaluate", help="PSNR/SSIM (and LPIPS/DISTS/NIQE) of a folder of SR outputs vs HR (standard SR protocol)",
        description="PSNR/SSIM on Y (BT.601) with `scale` border pixels cropped, as SR papers report them. "
        "Set5 x4 check: `basicsr data prepare --hr Set5 --scale 4 --out bench/Set5` then `basicsr evaluate "
        "--hr bench/Set5/HR --lr bench/Set5/LR_bicubic/X4 --scale 4 --bicubic` must give 28.42 dB "
        "(docs/benchmark-protocol.md).",
    )
    evaluate.add_argument("--sr", help="folder of super-resolved images (optional with --bicubic)")
    evaluate.add_argument("--hr", required=True, help="folder of HR references (same stems, or DIV2K-style x<s>)")
    evaluate.add_argument("--scale", type=int, required=True, help="upscaling factor = border pixels cropped")
    evaluate.add_argument("--rgb", action="store_true", help="measure on RGB instead of the Y channel")
    evaluate.add_argument("--suffix", default="", help="suffix of SR file stems to drop, e.g. _EDSR")
    evaluate.add_argument("--markdown", help="also write the table to this Markdown file")
    evaluate.add_argument("--bicubic", action="store_true",
                          help="add a bicubic row: MATLAB-bicubic upscaling of the --lr images (without --sr: "
                          "the bicubic table alone)")
    evaluate.add_argument("--lr", help="LR folder for --bicubic, e.g. OUT/LR_bicubic/X4 from `basicsr data prepare`")
    evaluate.add_argument("--metrics", default="psnr,ssim", metavar="NAMES",
                          help="comma-separated: psnr, ssim (always reported) plus lpips, dists, niqe (lower is "
                          "better; on CUDA when present; weights from the torch cache: `basicsr weights fetch "
                          "alexnet` / `vgg16` + `dists`), e.g. psnr,ssim,lpips,dists,niqe")

    export = sub.add_parser(
        "export", help="write a network as safetensors, ONNX or TorchScript, verified against PyTorch",
        description="The network comes from -opt (network_g + path.pretrain_network_g), from --weights alone "
        "(arch recognised from the weights: srode plugins, then spandrel) or from --arch + --weights. ONNX and "
        "TorchScript take (1, C, H, W) in [0, 1] with dynamic H, W and are checked on two random inputs against "
        "PyTorch (onnxruntime for ONNX); the max difference is printed and an export over the dtype's tolerance "
        "(fp32 1e-4, fp16 1e-2, bf16 5e-2) is refused and not written.",
        epilog="example: basicsr export --weights net_g_latest.pth --format onnx --dtype fp16 --output net.onnx",
    )
    export.add_argument("-opt", "--opt", help="option file whose network_g / path.pretrain_network_g to export")
    export.add_argument("--weights", help="checkpoint (.pth / .safetensors); alone, the arch is recognised from it")
    export.add_argument("--arch", help="arch name, when the weights are not recognised")
    export.add_argument("--arch-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="arch constructor argument (repeatable); overrides recognised values")
    export.add_argument("--scale", type=int, help="upscaling factor, where the weights do not fix it")
    export.add_argument("--format", required=True, choices=["safetensors", "onnx", "torchscript"])
    export.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                        help="weights / computation dtype of the file (default fp32)")
    export.add_argument("--output", required=True, help="file to write, e.g. model.onnx")

    sub.add_parser("env", help="versions, CPU/GPU capabilities, and what `amp: auto` / `channels_last: auto` pick")

    demo = sub.add_parser("demo", help="train a small model on the embedded demo data and compare with bicubic")
    demo.add_argument("--scale", type=int, default=2, choices=[2, 3, 4])
    demo.add_argument("--iters", type=int, default=None, help="training iterations (default: a few-minute run)")
    demo.add_argument("--out", default="demo_results", help="folder for the comparison PNGs and table")

    plugins = sub.add_parser("plugins", help="list, check or create plugins")
    plugins_sub = plugins.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    plugins_list = plugins_sub.add_parser("list", help="installed plugins, their components and status")
    plugins_list.add_argument("--deep", action="store_true", help="also import every component to check it")
    check = plugins_sub.add_parser("check", help="import one plugin and run its self-check")
    check.add_argument("name", help="distribution name, e.g. srode-plugin-node")
    from srode_plugins.scaffold import add_new_arguments

    add_new_arguments(plugins_sub.add_parser("new", help="generate a new plugin distribution"))

    opts = sub.add_parser("options", help="option files shipped inside installed plugins")
    opts_sub = opts.add_subparsers(dest="options_command", metavar="ACTION", required=True)
    opts_sub.add_parser("list", help="list shipped option files")
    copy = opts_sub.add_parser("copy", help="copy a shipped option file to edit it")
    copy.add_argument("name", help="name from `basicsr options list`")
    copy.add_argument("dest", nargs="?", default="options", help="file or folder (default: ./options/)")
    check = opts_sub.add_parser("check", help="validate an option file against the typed schema (builds nothing)",
                                description="Checks every key's type and range, unknown keys (with the nearest "
                                "matches) and each component's arguments against its constructor. Imports only "
                                "the components the file names.")
    check.add_argument("file", help="YAML option file")
    mode = check.add_mutually_exclusive_group()
    mode.add_argument("--train", dest="is_train", action="store_true", default=True,
                      help="check it as `basicsr train` would (default)")
    mode.add_argument("--test", dest="is_train", action="store_false", help="check it as `basicsr test` would")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override an option before checking (repeatable)")
    schema = opts_sub.add_parser("schema", help="print the option reference (a section or a component's keys)")
    schema.add_argument("name", nargs="?", help="section (train, val, datasets, logger, ...) or component "
                        "(EDSR, SRGANModel, L1Loss, Adam, ...); default: every core section")
    schema.add_argument("--markdown", action="store_true", help="the whole reference as Markdown (docs/options.md)")

    data = sub.add_parser("data", help="dataset preparation")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    prepare = data_sub.add_parser("prepare", help="HR folder -> bicubic LR (MATLAB-style), crops, LMDB")
    from srode_plugins.data.prepare import add_prepare_arguments

    add_prepare_arguments(prepare)

    from srode_plugins.weights_cli import add_weights_arguments

    add_weights_arguments(sub.add_parser("weights", help="list, download (fetch) or locate pretrained weights"))
    return parser


def _plugin_commands() -> list[str]:
    """Names of the installed plugins' commands (never one of the core's)."""
    return sorted(catalog().command_providers())


def _run_plugin_command(name: str, argv: list[str]) -> int:
    target = catalog().command(name)
    module_name, _, attr = target.partition(":")
    from srode_plugins import compat

    compat.apply()  # plugin commands may import basicsr

    main = getattr(importlib.import_module(module_name), attr or "main")
    return int(main(argv) or 0)


def _overrides(args: argparse.Namespace) -> list[str]:
    return list(args.overrides) + [entry.replace(":", ".") for entry in args.force_yml]


def _dispatch(args: argparse.Namespace) -> int:
    from srode_plugins import commands

    if args.command == "train":
        from srode_plugins.engine.train import train

        train(args.opt, overrides=_overrides(args), demo=args.demo, launcher=args.launcher,
              auto_resume=args.auto_resume)
        return 0
    if args.command == "test":
        from srode_plugins.engine.test import test

        test(args.opt, overrides=_overrides(args), demo=args.demo, self_ensemble=args.self_ensemble)
        return 0
    if args.command == "infer":
        return commands.infer(args)
    if args.command == "export":
        return commands.export(args)
    if args.command == "evaluate":
        return commands.evaluate(args)
    if args.command == "env":
        return commands.env()
    if args.command == "demo":
        from srode_plugins.demo_job import run_demo

        run_demo(scale=args.scale, iters=args.iters, out_dir=args.out)
        return 0
    if args.command == "plugins":
        if args.plugins_command == "list":
            return commands.plugins_list(deep=args.deep)
        if args.plugins_command == "new":
            from srode_plugins.scaffold import run_new

            return run_new(args)
        return commands.plugins_check(args.name)
    if args.command == "options":
        if args.options_command == "list":
            return commands.options_list()
        if args.options_command == "check":
            return commands.options_check(args.file, is_train=args.is_train, overrides=args.overrides)
        if args.options_command == "schema":
            return commands.options_schema(args.name, markdown=args.markdown)
        return commands.options_copy(args.name, args.dest)
    if args.command == "data":
        from srode_plugins.data.prepare import run_prepare

        return run_prepare(args)
    if args.command == "weights":
        from srode_plugins.weights_cli import run_weights

        return run_weights(args)
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] not in CORE_COMMANDS and argv[0] in _plugin_commands():
            return _run_plugin_command(argv[0], argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return _dispatch(args)
    except SrodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `basicsr options list | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (silence the flush at exit)
        return 0
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted: {exc}" if str(exc) else "\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
