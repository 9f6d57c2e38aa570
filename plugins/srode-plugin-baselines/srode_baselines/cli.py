"""`basicsr baselines ...`: commands of the baselines plugin.

    basicsr baselines init-from --src x2.pth --opt EDSR_x4.yml --out x4_init.pth

builds the option file's network, copies every scale-independent tensor from the checkpoint, reports the
layers left new (the upsampler) and writes a BasicSR checkpoint (`{'params': ...}`) for
`path.pretrain_network_g` of the x3 / x4 run.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="basicsr baselines", description="EDSR / RRDB baseline tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser(
        "init-from",
        help="initialise the option file's network from weights trained at another scale (EDSR: x2 -> x3/x4)",
        description="Copy every tensor whose name and shape match, except the arch's upsampler; "
        "report the layers left new; write a BasicSR checkpoint.",
    )
    init.add_argument("--src", required=True, type=Path, help="checkpoint trained at the other scale (.pth)")
    init.add_argument("--opt", required=True, type=Path, help="option file of the run to initialise")
    init.add_argument("--out", required=True, type=Path, help="where to write the initialised checkpoint")
    init.add_argument("--param-key", default="params", help="entry of --src to read (params or params_ema)")
    init.add_argument("--network", default="network_g", help="option key of the network to build")
    init.add_argument(
        "--new-prefix",
        action="append",
        dest="new_prefixes",
        metavar="PREFIX",
        help="tensor-name prefix to leave freshly initialised (repeatable); default: the arch's upsampler",
    )
    init.add_argument("--seed", type=int, default=0, help="seed of the fresh initialisation of new layers")
    return parser


def init_from(
    src: Path,
    opt: Path,
    out: Path,
    param_key: str = "params",
    network: str = "network_g",
    new_prefixes: tuple[str, ...] | None = None,
    seed: int = 0,
) -> str:
    """Build `network` from option file `opt`, transfer weights from checkpoint `src`, save to `out`.

    Returns:
        The transfer summary (copied / new / unused tensors) and where the checkpoint went.
    """
    import torch

    from srode_baselines.scale_transfer import UPSAMPLER_PREFIXES, load_basicsr_params, transfer_weights
    from srode_plugins import api

    option_file = api.load_options(opt)
    network_opt = option_file.opt.get(network)
    if not isinstance(network_opt, dict) or "type" not in network_opt:
        raise option_file.error("missing or has no 'type'; name the network to build with --network", network)
    if new_prefixes is None:
        new_prefixes = UPSAMPLER_PREFIXES.get(str(network_opt["type"]), ())
    torch.manual_seed(seed)
    target = api.build_component("archs", network_opt)
    report = transfer_weights(load_basicsr_params(src, param_key), target, new_prefixes)
    if not report.copied:
        raise option_file.error(
            f"no tensor of '{src}' fits the {network_opt['type']} built from this option; "
            "check that the checkpoint belongs to the same arch and width",
            network,
        )
    api.atomic_save({"params": target.state_dict()}, out)
    return f"{report.summary()}\nwrote {out} (load it with path.pretrain_network_g: {out}, strict_load_g: true)"


def main(argv: list[str]) -> int:
    """Entry point of `basicsr baselines ARGS...`; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "init-from":
        prefixes = tuple(args.new_prefixes) if args.new_prefixes else None
        print(init_from(args.src, args.opt, args.out, args.param_key, args.network, prefixes, args.seed))
    return 0
