"""`basicsr weights list | fetch NAME... | path NAME`: the pretrained files srode knows, on demand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srode_plugins.errors import MissingWeightsError
from srode_plugins.weights import WeightsFile, fetch_weights, torch_cache_checkpoints, weights_registry

_DESCRIPTION = (
    "Pretrained files srode can use (VGG/AlexNet backbones, plugin checkpoints such as ResShift's). Nothing is "
    "ever downloaded implicitly: `fetch` is the only command that downloads, into $TORCH_HOME/hub/checkpoints "
    "(default ~/.cache/torch/hub/checkpoints), where training and testing look for them."
)


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `basicsr weights` actions to `parser`."""
    parser.description = _DESCRIPTION
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="every known file: name, size, hash check, whether it is on disk, what uses it")
    fetch = actions.add_parser(
        "fetch",
        help="download files into the torch cache (progress bar, resumable, SHA-256 checked)",
        description="Download into the torch cache with a progress bar. An interrupted download resumes on the "
        "next run; the file is moved into place only when its SHA-256 matches the registry.",
    )
    fetch.add_argument("names", nargs="+", metavar="NAME", help="registry name(s) from `basicsr weights list`")
    fetch.add_argument("--dir", type=Path, metavar="DIR", help="download here instead of the torch cache")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    path = actions.add_parser("path", help="print where a file is (error with the fetch command when missing)")
    path.add_argument("name", metavar="NAME", help="registry name from `basicsr weights list`")


def _size(entry: WeightsFile) -> str:
    return "?" if entry.size_mib is None else f"{entry.size_mib:.1f} MiB"


def _list() -> int:
    registry = weights_registry()
    cache = torch_cache_checkpoints()
    print(f"torch cache: {cache}")
    for entry in registry:
        present = (cache / entry.filename).is_file()
        print(f"{entry.name:<24} {entry.filename:<32} {_size(entry):>11}  hash: {entry.hash_check:<13} "
              f"{'present' if present else 'missing'}  ({registry.provider(entry.name)})")
        print(f"{'':<24} used by: {entry.used_by}")
    for problem in registry.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print("Download one with: basicsr weights fetch NAME")
    return 0


def _fetch(names: list[str], directory: Path | None, quiet: bool) -> int:
    registry = weights_registry()
    entries = [registry.get(name) for name in names]  # every name checked before anything downloads
    for entry in entries:
        fetched = fetch_weights(entry, directory, progress=not quiet)
        state = "downloaded" if fetched.downloaded else "already present"
        print(f"{entry.name}: {state}: {fetched.path}")
        if entry.sha256 is None:
            print(f"warning: no published SHA-256 for '{entry.name}' could be checked; this file's SHA-256 is "
                  f"{fetched.sha256}: compare it with a trusted source", file=sys.stderr)
        else:
            print(f"{entry.name}: {entry.hash_check} {entry.sha256} verified ({fetched.sha256})")
    return 0


def _path(name: str) -> int:
    entry = weights_registry().get(name)
    path = torch_cache_checkpoints() / entry.filename
    if not path.is_file():
        raise MissingWeightsError(
            f"weights '{name}' ({entry.filename}) is not in '{path.parent}'; download it with: basicsr weights fetch "
            f"{name}"
        )
    print(path)
    return 0


def run_weights(args: argparse.Namespace) -> int:
    """Run `basicsr weights ACTION` with parsed `args`. Returns the exit status."""
    if args.weights_command == "list":
        return _list()
    if args.weights_command == "fetch":
        return _fetch(args.names, args.dir, args.quiet)
    return _path(args.name)
