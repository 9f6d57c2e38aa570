"""Option files: load, validate and prepare them for BasicSR, with errors that name file, key and value.

Unlike BasicSR's `parse_options`, this does no argument parsing, distributed init or seeding, never
`exec`s user input, and resolves relative paths against the working directory, then the option file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from srode_plugins.errors import OptionError

if TYPE_CHECKING:
    from srode_plugins.data.demo import DemoPaths

DEMO_SCHEME = "demo://"
# BasicSR's datasets read `use_hflip`; some of its own option files (train_MSRGAN_x4) still write the older
# `use_flip`, on which its train.py stops with KeyError: 'use_hflip'.
LEGACY_DATASET_KEYS = {"use_flip": "use_hflip"}
# Datasets that read their HR image list from a `meta_info` file (the demo writes one for its photos).
LISTED_GT_DATASETS = ("RealESRGANDataset",)
DEMO_GT_SIZE = 96  # the --demo training crop when no network needs a size of its own
# Stock archs that accept one input size only, with the default of their `input_size` argument.
FIXED_INPUT_ARCHS = {"VGGStyleDiscriminator": 128}
DATAROOT_KEYS = ("dataroot_gt", "dataroot_lq", "meta_info_file")
PATH_KEYS_CHECKED = ("pretrain_network_g", "pretrain_network_d", "resume_state")
DATA_FIX = "Fix the path, prepare the data with `basicsr data prepare`, or run on the embedded demo data with --demo."
# BasicSR's option files expect its released weights under experiments/pretrained_models/ (listed for download
# in its model zoo), and weights trained by another option file under experiments/<name>/models/.
MODEL_ZOO = "https://github.com/XPixelGroup/BasicSR/blob/master/docs/ModelZoo.md"
_RELEASED_WEIGHTS = re.compile(r"(?:^|/)experiments/pretrained_models/")
_TRAINED_WEIGHTS = re.compile(r"(?:^|/)experiments/(?P<name>[^/]+)/models/[^/]+$")


class OptionLoader(yaml.SafeLoader):
    """Safe YAML loading that also reads `2e-4` as a float (PyYAML's YAML 1.1 rules need `2.0e-4`)."""


OptionLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
# Only true/false are booleans (YAML 1.2): PyYAML's YAML 1.1 rules also read yes/no/on/off as booleans, which
# the schema then could not tell from a real `true` (and `no` as a text value would silently become False).
OptionLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in OptionLoader.yaml_implicit_resolvers.items()
}
OptionLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


@dataclass
class OptionFile:
    """A loaded option file: the (mutable) option dict, where it came from, and the key paths set by --set."""

    opt: dict[str, Any]
    file: Path
    overridden: set[str] = field(default_factory=set)

    def error(self, message: str, key: str | None = None) -> OptionError:
        return OptionError(message, file=str(self.file), key=key)

    def was_overridden(self, key_path: str) -> bool:
        """Whether --set named `key_path`, a key above it or a key inside it."""
        return any(key_path == o or key_path.startswith(o + ".") or o.startswith(key_path + ".")
                   for o in self.overridden)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML option file into plain dicts; syntax errors carry line and column."""
    file = Path(path)
    if not file.is_file():
        raise OptionError(f"option file not found (cwd: {os.getcwd()}). Check the path given to -opt.", file=str(file))
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise OptionError(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line} (offset {exc.start}). Save "
                          f"the file as UTF-8 and run again.", file=str(file)) from None
    try:
        data = yaml.load(text, Loader=OptionLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise OptionError(f"YAML syntax error{where}: {exc.problem}. Fix the file and run again.",
                          file=str(file)) from exc
    except yaml.YAMLError as exc:  # e.g. a NUL or other control character (yaml.reader.ReaderError)
        raise OptionError(f"not a YAML text: {exc}. Remove the character and run again.", file=str(file)) from None
    if not isinstance(data, dict):
        raise OptionError("an option file must be a YAML mapping (key: value lines)", file=str(file))
    return data


def load(path: str | os.PathLike[str], overrides: list[str] | None = None) -> OptionFile:
    opts = OptionFile(opt=load_yaml(path), file=Path(path).resolve())
    for entry in overrides or []:
        apply_override(opts, entry)
    return opts


def apply_override(opts: OptionFile, entry: str) -> None:
    """Apply `a.b.c=value` (value parsed as YAML, so `3`, `1e-4`, `[1, 2]`, `~` work)."""
    if "=" not in entry:
        raise opts.error(f"override '{entry}' must look like key.path=value, e.g. train.total_iter=100")
    key_path, raw = entry.split("=", 1)
    keys = [k for k in key_path.strip().replace(":", ".").split(".") if k]
    if not keys:
        raise opts.error(f"override '{entry}' names no key")
    node = opts.opt
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise opts.error(f"cannot set '{key_path}': '{'.'.join(keys[:depth + 1])}' is not a mapping", key_path)
        node = child
    node[keys[-1]] = yaml.load(raw, Loader=OptionLoader) if raw.strip() else ""
    opts.overridden.add(".".join(keys))


def get_path(opt: dict[str, Any], key_path: str, default: Any = None) -> Any:
    node: Any = opt
    for key in key_path.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


# ---------------------------------------------------------------- component references


def component_references(opt: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """Yield (kind, name, key path) for every component an option dict names."""
    if opt.get("model_type"):
        yield "models", str(opt["model_type"]), "model_type"
    for key, value in opt.items():
        if key.startswith("network_") and isinstance(value, dict) and "type" in value:
            yield "archs", str(value["type"]), f"{key}.type"
    for phase, dataset in (opt.get("datasets") or {}).items():
        if isinstance(dataset, dict) and "type" in dataset:
            yield "datasets", str(dataset["type"]), f"datasets.{phase}.type"
    train = opt.get("train") or {}
    for key, value in train.items():
        if not isinstance(value, dict) or "type" not in value:
            continue
        if key.endswith("_opt"):
            yield "losses", str(value["type"]), f"train.{key}.type"
        elif key == "scheduler":
            yield "lr_schedulers", str(value["type"]), "train.scheduler.type"
    for name, metric in ((opt.get("val") or {}).get("metrics") or {}).items():
        if isinstance(metric, dict) and "type" in metric:
            yield "metrics", str(metric["type"]), f"val.metrics.{name}.type"


def extra_kind_references(opt: dict[str, Any], kinds: list[str]) -> Iterator[tuple[str, str, str]]:
    """References to plugin-defined kinds: a mapping under key `sampler` or `samplers`, or one entry of a
    `samplers` mapping or list (`samplers.fast`, `samplers.0`), is a `samplers` one. Only the nearest keys
    count, so a `type:` nested inside a sampler's own options is not taken for a sampler."""
    plugin_kinds = [k for k in kinds if k not in ("archs", "models", "losses", "datasets", "metrics", "lr_schedulers")]
    by_key = {k[:-1] if k.endswith("s") else k: k for k in plugin_kinds} | {k: k for k in plugin_kinds}

    def kind_of(path: list[str], parent_is_component: bool) -> str | None:
        if path and path[-1] in by_key:
            return by_key[path[-1]]
        if len(path) >= 2 and path[-2] in plugin_kinds and not parent_is_component:
            return path[-2]
        return None

    def walk(node: Any, path: list[str], parent_is_component: bool) -> Iterator[tuple[str, str, str]]:
        if isinstance(node, dict):
            kind = kind_of(path, parent_is_component) if "type" in node else None
            if kind:
                yield kind, str(node["type"]), ".".join(path + ["type"])
            for key, value in node.items():
                yield from walk(value, path + [str(key)], "type" in node)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, path + [str(i)], False)

    yield from walk(opt, [], False)


# ---------------------------------------------------------------- validation helpers


def resolve_path(opts: OptionFile, key_path: str, value: str, must_exist: bool = True, fix: str = DATA_FIX) -> str:
    """Expand ~ and demo://; a relative path is tried against the cwd, then the option file's folder.
    `fix` ends the error of a path that does not exist."""
    if value.startswith(DEMO_SCHEME):
        from srode_plugins.data.demo import resolve_demo_uri

        try:
            return str(resolve_demo_uri(value))
        except ValueError as exc:
            raise opts.error(str(exc), key_path) from exc
    path = Path(os.path.expanduser(value))
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, opts.file.parent / path]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate.resolve())
    if not must_exist:
        return str(candidates[0])
    tried = " or ".join(f"'{c}'" for c in candidates)
    raise opts.error(f"path '{value}' does not exist (tried {tried}). {fix}", key_path)


def rename_legacy_dataset_keys(opts: OptionFile) -> None:
    """Give each dataset the key BasicSR's datasets read where the option file writes an older spelling."""
    for dataset in (opts.opt.get("datasets") or {}).values():
        for old, new in LEGACY_DATASET_KEYS.items():
            if isinstance(dataset, dict) and old in dataset and new not in dataset:
                dataset[new] = dataset[old]


def resolve_dataset_paths(opts: OptionFile) -> None:
    for phase, dataset in (opts.opt.get("datasets") or {}).items():
        if not isinstance(dataset, dict):
            raise opts.error("each dataset must be a mapping with at least 'name' and 'type'", f"datasets.{phase}")
        for key in DATAROOT_KEYS:
            value = dataset.get(key)
            if isinstance(value, str):
                dataset[key] = resolve_path(opts, f"datasets.{phase}.{key}", value)
            elif isinstance(value, list):
                dataset[key] = [resolve_path(opts, f"datasets.{phase}.{key}.{i}", v) for i, v in enumerate(value)]


def weights_fix(key: str, value: str) -> str:
    """How to fix a `path.<key>` (pretrained weights or a training state) that names no file."""
    drop = f"`--set path.{key}=~`"
    if key.startswith("resume_state"):
        return (f"`path.{key}` resumes a training state (experiments/<name>/training_states/<iter>.state): fix the "
                f"path, use --auto_resume to take the newest state of this experiment, or start afresh with {drop}.")
    network = key.removeprefix("pretrain_")
    posix = value.replace("\\", "/")
    trained = _TRAINED_WEIGHTS.search(posix)
    if _RELEASED_WEIGHTS.search(posix):
        source = f"download BasicSR's released weights (links in {MODEL_ZOO}) to that path"
    elif trained:
        source = f"train the experiment '{trained['name']}' first (`basicsr train` saves its weights there)"
    else:
        source = "put the .pth file there"
    return (f"`path.{key}` loads weights into {network} before the run: {source}, fix the path, or start "
            f"{network} from random weights with {drop}.")


def resolve_pretrained_paths(opts: OptionFile) -> None:
    for key, value in (opts.opt.get("path") or {}).items():
        if isinstance(value, str) and any(key.startswith(k) for k in PATH_KEYS_CHECKED):
            opts.opt["path"][key] = resolve_path(opts, f"path.{key}", value, fix=weights_fix(key, value))


def required_crop(opt: dict[str, Any]) -> tuple[str, int] | None:
    """(key path, side) of the one input size a network of `opt` accepts: its `input_size` option, or the
    default of a stock arch built for a single size; None when the networks take any crop."""
    for key, network in opt.items():
        if key.startswith("network_") and isinstance(network, dict):
            side = network.get("input_size", FIXED_INPUT_ARCHS.get(str(network.get("type"))))
            if side is not None:
                return f"{key}.input_size", int(side)
    return None


def demo_gt_size(opts: OptionFile, dataset: dict[str, Any], paths: DemoPaths) -> int:
    """The HR training crop under --demo: small for speed, unless a network requires its own size."""
    crop = required_crop(opts.opt)
    if crop is None:
        return min(int(dataset.get("gt_size", DEMO_GT_SIZE)), DEMO_GT_SIZE)
    from srode_plugins.data.demo import smallest_train_side

    key, side = crop
    smallest = smallest_train_side(paths)
    if side > smallest:
        raise opts.error(f"value {side}: the demo photos allow HR crops of at most {smallest} pixels; "
                         f"give this network a smaller input size for --demo", key)
    return side


def use_demo_data(opts: OptionFile) -> None:
    """Point every dataset of the option at the embedded demo data (same scale). Keys given with --set are
    kept; the training crop is the networks' required input size, else at most DEMO_GT_SIZE."""
    from srode_plugins.data.demo import demo_dataset, train_meta_info

    scale = int(opts.opt.get("scale", 4))
    paths = demo_dataset(scale)
    datasets = opts.opt.setdefault("datasets", {})
    for phase, dataset in list(datasets.items()):
        is_train = phase.split("_")[0] == "train"
        demo: dict[str, Any] = {
            "name": dataset.get("name", "demo") if not is_train else "demo_train",
            "dataroot_gt": str(paths.train_hr if is_train else paths.val_hr),
            "dataroot_lq": str(paths.train_lr if is_train else paths.val_lr),
            "io_backend": {"type": "disk"},
            "filename_tmpl": "{}",
        }
        if is_train:
            demo["num_worker_per_gpu"] = min(int(dataset.get("num_worker_per_gpu", 0)), 2)
            if not opts.was_overridden(f"datasets.{phase}.gt_size"):
                demo["gt_size"] = demo_gt_size(opts, dataset, paths)
        dataset.update({k: v for k, v in demo.items() if not opts.was_overridden(f"datasets.{phase}.{k}")})
        dataset.setdefault("type", "PairedImageDataset")
        for key in ("meta_info_file", "meta_info"):
            if not opts.was_overridden(f"datasets.{phase}.{key}"):
                dataset.pop(key, None)
                if key == "meta_info" and is_train and dataset["type"] in LISTED_GT_DATASETS:
                    dataset[key] = str(train_meta_info(paths))
    # a `val:` section without a dataset to score (train files that comment theirs out) gets the demo photos;
    # a test file's test_* datasets are the ones it scores
    if "val" in opts.opt and not any(p.split("_")[0] in ("val", "test") for p in datasets):
        datasets["val"] = {"name": "demo_val", "type": "PairedImageDataset", "dataroot_gt": str(paths.val_hr),
                           "dataroot_lq": str(paths.val_lr), "io_backend": {"type": "disk"}, "filename_tmpl": "{}"}
