"""The networks behind LPIPS (`lpips` package, Zhang et al. 2018) and DISTS (`pyiqa`, Ding et al. 2020),
built from files on disk only.

LPIPS's linear heads ship inside the `lpips` wheel; its ImageNet backbone is the torchvision checkpoint
(alexnet-owt-7be5be79.pth / vgg16-397923af.pth, keys ``features.N.*``) or a full LPIPS state dict (keys
``net.sliceK.N.*`` and ``linK.*``). DISTS needs torchvision's VGG16 and its own alpha/beta file. Each file is
looked up at the given path, else in the torch cache; a missing one raises MissingWeightsError naming the file and
the `basicsr weights fetch` command (registry: srode_plugins/weights.py). With SRODE_RANDOM_INIT_PRETRAINED=1 the
backbones (and DISTS's alpha/beta) stay randomly initialised and no file is read: for tests, never for reported
numbers.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace

import torch
from torch import Tensor, nn

from srode_plugins.compat import RANDOM_INIT_ENV
from srode_plugins.errors import MissingWeightsError
from srode_plugins.weights import resolve_weights

__all__ = ["DISTS_WEIGHTS", "LPIPS_BACKBONES", "VGG16_BACKBONE", "build_dists", "build_lpips"]

logger = logging.getLogger("basicsr")


# torch-cache file names; `basicsr weights fetch alexnet | vgg16 | dists` downloads them (srode_plugins/weights.py).
LPIPS_BACKBONES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
VGG16_BACKBONE = LPIPS_BACKBONES["vgg"]
DISTS_WEIGHTS = "DISTS_weights-f5e65c96.pth"


def random_init_requested() -> bool:
    return os.environ.get(RANDOM_INIT_ENV) == "1"


def _locate(filename: str, path: str | None, *, what: str, option_key: str, metric: str) -> str:
    section = option_key.rsplit(".", 1)[0]
    return str(resolve_weights(path, what=f"{metric}: {what}", option_key=option_key, default_name=filename,
                               disable_hint=f"drop '{section}' to run without {metric}"))


def _load_state(path: str) -> dict[str, Tensor]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "params"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def _from_torchvision_features(target_keys: list[str], checkpoint: dict[str, Tensor], path: str) -> dict[str, Tensor]:
    """Map torchvision `features.N.*` keys onto `<slice or stage>.N.*` (both keep the layer index N)."""
    renamed = {}
    for key in target_keys:
        layer_key = "features." + key.split(".", 1)[1]
        if layer_key not in checkpoint:
            raise MissingWeightsError(
                f"backbone checkpoint '{path}' has no '{layer_key}' (needed for '{key}'): it is not a torchvision "
                "AlexNet/VGG16 checkpoint. Point the backbone option at the torchvision file."
            )
        renamed[key] = checkpoint[layer_key]
    return renamed


def _warn_random(metric: str) -> None:
    logger.warning(f"{RANDOM_INIT_ENV}=1: {metric} uses a randomly initialised network; its numbers are not "
                   "comparable with published ones.")


def build_lpips(
    net: str = "alex", backbone_path: str | None = None, option_key: str = "val.metrics.lpips.backbone_path"
) -> nn.Module:
    """A frozen `lpips.LPIPS` (v0.1) in eval mode on the CPU: `model(x, y)` with x, y (B, 3, H, W) RGB in [-1, 1]
    returns (B, 1, 1, 1) distances. Raises MissingWeightsError when the backbone file is not on disk."""
    import lpips

    if net not in LPIPS_BACKBONES:
        raise ValueError(
            f"option '{option_key.rsplit('.', 1)[0]}.net' is {net!r}; choose one of {sorted(LPIPS_BACKBONES)}"
        )
    path = None if random_init_requested() else _locate(
        LPIPS_BACKBONES[net], backbone_path, what=f"{net} backbone (torchvision ImageNet weights)",
        option_key=option_key, metric="LPIPS")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's deprecation note on `pretrained=False`
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    if path is None:
        _warn_random("LPIPS")
    else:
        checkpoint = _load_state(path)
        if any(key.startswith("lin0.") for key in checkpoint):
            model.load_state_dict(checkpoint, strict=True)
        else:
            model.net.load_state_dict(_from_torchvision_features(list(model.net.state_dict()), checkpoint, path))
    model.requires_grad_(False)
    return model.eval()


@contextmanager
def _vgg16_without_download(module: ModuleType) -> Iterator[None]:
    # pyiqa's DISTS builds its VGG16 with weights='IMAGENET1K_V1', which downloads when the file is not cached.
    # For the one constructor call its module sees a VGG16 builder without weights; the file is loaded below.
    torchvision_models = module.models
    module.models = SimpleNamespace(vgg16=lambda **kwargs: torchvision_models.vgg16(weights=None))
    try:
        yield
    finally:
        module.models = torchvision_models


def pyiqa_module(name: str, metric: str, option_key: str) -> ModuleType:
    """Import a pyiqa module (an optional dependency); its absence is one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        from srode_plugins.errors import OptionError

        raise OptionError(f"{metric} needs the pyiqa package, which is not installed: pip install "
                          "'srode-plugins[metrics]' (or drop the metric)", key=option_key) from None


def build_dists(
    weights_path: str | None = None,
    backbone_path: str | None = None,
    option_key: str = "val.metrics.dists",
) -> nn.Module:
    """A frozen pyiqa `DISTS` in eval mode on the CPU: `model(x, y)` with x, y (B, 3, H, W) RGB in [0, 1] returns
    (B,) distances. Raises MissingWeightsError when the DISTS or the VGG16 file is not on disk."""
    dists_arch = pyiqa_module("pyiqa.archs.dists_arch", "DISTS", option_key)
    with _vgg16_without_download(dists_arch):
        model = dists_arch.DISTS(pretrained=False)
    if random_init_requested():
        _warn_random("DISTS")
    else:
        weights_file = _locate(DISTS_WEIGHTS, weights_path, what="alpha/beta weights (pyiqa)",
                               option_key=f"{option_key}.weights_path", metric="DISTS")
        dists_state = _load_state(weights_file)
        if not {"alpha", "beta"} <= set(dists_state):
            raise MissingWeightsError(f"DISTS weights file '{weights_file}' has no 'alpha'/'beta' entries; point "
                                      f"option '{option_key}.weights_path' at {DISTS_WEIGHTS.filename}.")
        backbone_keys = [k for k in model.state_dict() if k.startswith("stage") and k.endswith((".weight", ".bias"))]
        if not set(backbone_keys) <= set(dists_state):  # the DISTS file may carry the VGG16 layers itself
            backbone_file = _locate(VGG16_BACKBONE, backbone_path, what="VGG16 backbone (torchvision ImageNet weights)",
                                    option_key=f"{option_key}.backbone_path", metric="DISTS")
            dists_state.update(_from_torchvision_features(backbone_keys, _load_state(backbone_file), backbone_file))
        unexpected = set(dists_state) - set(model.state_dict())
        if unexpected:
            raise MissingWeightsError(f"DISTS weights file '{weights_file}' holds unknown keys "
                                      f"{sorted(unexpected)[:5]}; is it {DISTS_WEIGHTS.filename}?")
        model.load_state_dict(dists_state, strict=False)
    model.requires_grad_(False)
    return model.eval()
