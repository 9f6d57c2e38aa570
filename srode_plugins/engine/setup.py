"""The one option pipeline of `basicsr train` / `basicsr test`: an option file in, a `RunOptions` out.

    load YAML -> --set overrides -> network from its weights (type: auto) -> --demo data -> typed schema
    -> legacy keys -> components (imports only those named) -> paths -> defaults -> runtime facts
    (device, DDP rank, seed, run folders, precision)

Each step is one function below, in that order (`prepare_run` calls them); the result is what BasicSR models read
(`RunOptions.opt`) plus the facts the engine decided (device, precision).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srode_plugins import options as options_mod
from srode_plugins import schema
from srode_plugins.components import load_component
from srode_plugins.discovery import catalog
from srode_plugins.options import OptionFile

if TYPE_CHECKING:
    import torch

    from srode_plugins.engine.precision import Precision


@dataclass(frozen=True)
class RunOptions:
    """An option file after the pipeline: validated, components imported, paths absolute, runtime filled in."""

    file: Path  # the option file
    opt: dict[str, Any]  # the complete option dict BasicSR models read
    is_train: bool
    dist: bool  # DDP (torchrun --launcher pytorch)
    device: torch.device  # CUDA when num_gpu resolved to > 0, else CPU
    precision: Precision | None  # training: the resolved amp / channels_last; None for test


def prepare_run(opt_path: str | os.PathLike[str], overrides: list[str] | None, *, is_train: bool, root: Path,
                demo: bool = False, launcher: str = "none", auto_resume: bool = False) -> RunOptions:
    """Run the whole pipeline (module docstring) for `basicsr train` (is_train) or `basicsr test`."""
    import torch

    opts = options_mod.load(opt_path, overrides)
    dist = init_distributed(launcher) if is_train else False
    opt = prepare(opts, is_train=is_train, root=root, demo=demo, dist=dist, auto_resume=auto_resume)
    seed_everything(opt)
    device = torch.device("cuda" if opt["num_gpu"] > 0 else "cpu")
    precision = resolve_precision(opt["train"], device, str(opts.file)) if is_train else None
    return RunOptions(file=opts.file, opt=opt, is_train=is_train, dist=dist, device=device, precision=precision)


def resolve_precision(train_opt: dict[str, Any], device: torch.device, file: str) -> Precision:
    """Resolve `amp` / `channels_last` (auto or explicit) once per run, and write the choice back for the engine
    and the logged option dump."""
    from srode_plugins.engine import precision as precision_mod

    facts = precision_mod.detect(device.type, device.index or 0)
    choice = precision_mod.resolve(train_opt.get("amp"), train_opt.get("channels_last"), facts, file=file)
    train_opt["amp"], train_opt["channels_last"] = choice.amp, choice.channels_last
    return choice


def resolve_device_count(opts: OptionFile) -> int:
    """`num_gpu: auto` (or absent) -> number of visible CUDA devices (0 = CPU)."""
    import torch

    value = opts.opt.get("num_gpu", "auto")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if value in ("auto", None):
        return available
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise opts.error(f"value {value!r}: use 'auto' (CUDA when present, else CPU) or a whole number >= 0",
                         "num_gpu")
    if value > available:
        from basicsr.utils import get_root_logger

        get_root_logger().warning(f"num_gpu: {value} but {available} CUDA device(s) visible: using {available}.")
        return available
    return value


def resolve_components(opts: OptionFile) -> None:
    """Import (only) the plugin modules the option file names; unknown names raise a helpful error."""
    file = str(opts.file)
    refs = list(options_mod.component_references(opts.opt))
    refs += list(options_mod.extra_kind_references(opts.opt, catalog().kinds()))
    for kind, name, key in refs:
        load_component(kind, name, file=file, key=key)


def validate_common(opts: OptionFile, is_train: bool) -> None:
    """Check the option file against the typed schema (srode_plugins.schema), then name unnamed datasets."""
    schema.validate(opts, is_train=is_train)
    for phase, dataset in opts.opt["datasets"].items():
        dataset.setdefault("name", phase)


def fill_defaults(opt: dict[str, Any], is_train: bool) -> None:
    opt.setdefault("path", {})
    for key in ("pretrain_network_g", "resume_state"):
        opt["path"].setdefault(key, None)
    opt["path"].setdefault("strict_load_g", True)
    logger = opt.setdefault("logger", {})
    logger.setdefault("print_freq", 100)
    logger.setdefault("save_checkpoint_freq", 5000)
    logger.setdefault("use_tb_logger", False)
    if "val" in opt and opt["val"] is not None:
        opt["val"].setdefault("save_img", False)
        opt["val"].setdefault("suffix", None)
    if not is_train:
        opt.setdefault("val", {"save_img": True, "suffix": None})
    for phase, dataset in opt["datasets"].items():
        dataset["phase"] = phase.split("_")[0]
        if "scale" in opt:
            dataset["scale"] = opt["scale"]
        dataset.setdefault("io_backend", {"type": "disk"})
        if dataset["phase"] == "train" and int(dataset.get("num_worker_per_gpu") or 0) > 0:
            # keep loader workers (and their decoded-image caches) alive across epochs instead of re-forking them
            dataset.setdefault("persistent_workers", True)


def set_run_paths(opt: dict[str, Any], root: Path, is_train: bool) -> None:
    if is_train:
        exp = root / "experiments" / opt["name"]
        opt["path"].update(experiments_root=str(exp), models=str(exp / "models"),
                           training_states=str(exp / "training_states"), log=str(exp),
                           visualization=str(exp / "visualization"))
    else:
        res = root / "results" / opt["name"]
        opt["path"].update(results_root=str(res), log=str(res), visualization=str(res / "visualization"))


def prepare(opts: OptionFile, *, is_train: bool, root: Path, demo: bool = False, dist: bool = False,
            auto_resume: bool = False) -> dict[str, Any]:
    """Validate, resolve components and paths, and fill what BasicSR models read from `opt`."""
    from srode_plugins.detection import resolve_auto_network

    resolve_auto_network(opts)  # `network_g` absent or `type: auto`: the arch is read from its pretrained weights
    if demo:
        options_mod.use_demo_data(opts)
    validate_common(opts, is_train)
    options_mod.rename_legacy_dataset_keys(opts)
    resolve_components(opts)
    options_mod.resolve_dataset_paths(opts)
    options_mod.resolve_pretrained_paths(opts)
    opt = opts.opt
    fill_defaults(opt, is_train)
    opt["num_gpu"] = resolve_device_count(opts)
    opt["is_train"] = is_train
    opt["dist"] = dist
    opt["auto_resume"] = auto_resume
    opt["root_path"] = str(root)
    opt["opt_file"] = str(opts.file)
    from basicsr.utils.dist_util import get_dist_info

    opt["rank"], opt["world_size"] = get_dist_info()
    if opt.get("manual_seed") is None:
        opt["manual_seed"] = random.randint(1, 10000)
    set_run_paths(opt, root, is_train)
    return opt


def seed_everything(opt: dict[str, Any]) -> None:
    from basicsr.utils import set_random_seed

    set_random_seed(int(opt["manual_seed"]) + int(opt["rank"]))


def init_distributed(launcher: str) -> bool:
    """`--launcher pytorch` under torchrun: nccl with CUDA, gloo without. Returns whether distributed."""
    if launcher == "none":
        return False
    from basicsr.utils.dist_util import init_dist

    if launcher == "pytorch" and "RANK" not in os.environ:
        from srode_plugins.errors import SrodeError

        raise SrodeError("--launcher pytorch needs torchrun: torchrun --nproc_per_node N -m srode_plugins train ...")
    init_dist(launcher)
    return True
