"""The public API a plugin may use (core API version `API_VERSION`).

Importing it applies the BasicSR compat patches, so plugins import it before any `basicsr` module.
Everything listed in `__all__` follows the stability promise in docs/writing-plugins.md: it changes
only with a new API major version.
"""

from __future__ import annotations

from typing import Any

import torch

from srode_plugins import API_VERSION, __version__, compat
from srode_plugins.checkpoints import atomic_save, load_network_weights, read_state_dict, unwrap_state_dict
from srode_plugins.compat import RANDOM_INIT_ENV, VGG_WEIGHT_FILES
from srode_plugins.compat_stages import sr_losses
from srode_plugins.components import build_component, list_components, load_component
from srode_plugins.data.demo import DemoPaths, demo_dataset, demo_options
from srode_plugins.detection import ArchMatch, DetectedNetwork, detect, detect_file, indices, pixel_shuffle_scale
from srode_plugins.engine.step import LossStage, StageLosses, optimize_stages
from srode_plugins.errors import (
    DuplicateComponentError,
    MissingWeightsError,
    OptionError,
    PluginLoadError,
    SrodeError,
    TrainingAborted,
    UnknownComponentError,
)
from srode_plugins.evaluation import evaluate_folder, psnr_ssim, to_markdown
from srode_plugins.inference import self_ensemble, tiled_forward
from srode_plugins.metrics.networks import build_dists, build_lpips
from srode_plugins.metrics.scores import dists_distance, lpips_distance, niqe_score
from srode_plugins.options import OptionFile
from srode_plugins.options import load as load_options
from srode_plugins.schema import Key as OptionKey
from srode_plugins.schema import Section as OptionSection
from srode_plugins.weights import WeightsFile, resolve_weights, torch_cache_checkpoints

compat.apply()  # makes `import basicsr` work for the plugin that imports this API


def train(opt_path: str, *, overrides: list[str] | None = None, demo: bool = False, root: Any = None) -> Any:
    """`basicsr train -opt opt_path [--set ...] [--demo]` in this process; returns the engine's RunResult
    (`.iter`, `.metrics`, `.model`, `.experiments_root`, `.history`, ...)."""
    from srode_plugins.engine.train import train as run_training

    return run_training(opt_path, overrides=overrides, demo=demo, root=root)


def prepare_test_options(
    opt_path: str, *, overrides: list[str] | None = None, demo: bool = False, root: Any = None
) -> dict[str, Any]:
    """The option dict `basicsr test -opt opt_path [--set ...] [--demo]` runs with: validated, components
    resolved, paths under `root` (default: the working directory), device chosen, seeds set."""
    from pathlib import Path

    from srode_plugins.engine import setup

    root = Path(root if root is not None else Path.cwd()).resolve()
    return setup.prepare_run(opt_path, overrides, is_train=False, root=root, demo=demo).opt


def get_component(kind: str, name: str) -> object:
    """The object registered as `name` of `kind` ("archs", "models", "samplers", ...), imported on first use."""
    return load_component(kind, name)


def select_device(preference: str = "auto") -> torch.device:
    """`auto`: CUDA when present, else CPU. Anything else is passed to torch.device (e.g. "cuda:1")."""
    if preference in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device '{preference}' requested but CUDA is not available; use 'auto' or 'cpu'",
                          key="device")
    return device


__all__ = [
    "unwrap_state_dict",
    "train",
    "read_state_dict",
    "WeightsFile",
    "API_VERSION",
    "ArchMatch",
    "DemoPaths",
    "DetectedNetwork",
    "DuplicateComponentError",
    "LossStage",
    "MissingWeightsError",
    "OptionFile",
    "OptionKey",
    "OptionSection",
    "RANDOM_INIT_ENV",
    "VGG_WEIGHT_FILES",
    "OptionError",
    "PluginLoadError",
    "SrodeError",
    "StageLosses",
    "TrainingAborted",
    "UnknownComponentError",
    "__version__",
    "atomic_save",
    "build_component",
    "build_dists",
    "build_lpips",
    "demo_dataset",
    "demo_options",
    "dists_distance",
    "detect",
    "detect_file",
    "evaluate_folder",
    "get_component",
    "indices",
    "list_components",
    "load_network_weights",
    "load_options",
    "optimize_stages",
    "prepare_test_options",
    "lpips_distance",
    "niqe_score",
    "pixel_shuffle_scale",
    "psnr_ssim",
    "resolve_weights",
    "select_device",
    "sr_losses",
    "self_ensemble",
    "tiled_forward",
    "to_markdown",
    "torch_cache_checkpoints",
]
