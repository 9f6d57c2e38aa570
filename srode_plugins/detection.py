"""Recognise a checkpoint's architecture from its keys and shapes, so users never name the arch twice.

Plugins register one detector per arch in the entry-point group `srode.detectors` (entry name = the arch's
registry name, value = a function `(state_dict) -> ArchMatch | None`); they are tried first. The `spandrel`
package then recognises the community archs it knows (ESRGAN/RRDBNet, SwinIR, HAT, DAT, SPAN, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srode_plugins.discovery import catalog
from srode_plugins.errors import OptionError, SrodeError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from srode_plugins.options import OptionFile

DETECTOR_KIND = "detectors"
SPANDREL = "spandrel"
# The arch srode builds for a checkpoint only spandrel knows (its own module classes, trainable as any arch).
SPANDREL_ARCH = "SpandrelNet"


@dataclass(frozen=True)
class ArchMatch:
    """What a detector read from a state dict: the arch's constructor keyword arguments and its scale.

    `scale` is None when the weights do not fix it (e.g. x2 and x3 share every shape); `scale_option` then
    names the keyword argument that takes the scale the user gives (`--scale`, the option file's `scale`).
    """

    options: Mapping[str, Any]
    scale: int | None
    scale_option: str | None = None


@dataclass
class DetectedNetwork:
    """A network recognised from a checkpoint, built, with its weights loaded (eval mode, CPU, float32)."""

    arch: str
    scale: int
    network: nn.Module
    detected_by: str  # the distribution whose detector matched, or "spandrel"
    options: dict[str, Any] = field(default_factory=dict)  # constructor kwargs ({} for spandrel's own classes)

    @property
    def network_options(self) -> dict[str, Any]:
        """The `network_g` mapping that rebuilds this network from an option file."""
        return {"type": self.arch, **self.options}


def indices(state_dict: Mapping[str, Tensor], prefix: str) -> list[int]:
    """The distinct integers N of keys `<prefix>N.<rest>` in ascending order (e.g. the blocks of a ModuleList)."""
    found = set()
    for key in state_dict:
        head = key[len(prefix):].split(".", 1)[0] if key.startswith(prefix) else ""
        if head.isdigit():
            found.add(int(head))
    return sorted(found)


def pixel_shuffle_scale(state_dict: Mapping[str, Tensor], prefix: str, num_feat: int) -> int | None:
    """The scale of a BasicSR-style `Upsample` (conv + PixelShuffle pairs at indices 0, 2, 4, ...) under `prefix`.

    Each conv turns num_feat into r^2 * num_feat channels; the scale is the product of the r. None when the
    convs under `prefix` do not have that form.
    """
    scale = 1
    for index in indices(state_dict, prefix):
        weight = state_dict.get(f"{prefix}{index}.weight")
        if weight is None or weight.ndim != 4 or weight.shape[0] % num_feat:
            return None
        ratio = round((weight.shape[0] // num_feat) ** 0.5)
        if ratio * ratio * num_feat != weight.shape[0]:
            return None
        scale *= ratio
    return scale if scale > 1 else None


def detector_names() -> list[str]:
    """Archs that installed plugins can recognise (no plugin import)."""
    return catalog().names(DETECTOR_KIND)


def _srode_matches(state_dict: Mapping[str, Tensor]) -> list[tuple[str, ArchMatch]]:
    from srode_plugins.components import load_component

    matches = []
    for name in detector_names():
        match = load_component(DETECTOR_KIND, name)(state_dict)
        if match is not None:
            matches.append((name, match))
    return matches


def _resolve_scale(name: str, match: ArchMatch, scale: int | None, source: str) -> tuple[dict[str, Any], int]:
    options = dict(match.options)
    if match.scale is not None:
        if scale is not None and scale != match.scale:
            raise SrodeError(f"{source}: the weights are a x{match.scale} {name}, not x{scale}; drop the scale "
                             f"or pass {match.scale}")
        return options, match.scale
    if scale is None:
        raise SrodeError(f"{source}: the weights of this {name} do not say its scale; pass --scale N (infer / "
                         f"export) or set `scale:` in the option file")
    options[match.scale_option or "upscale"] = scale
    return options, scale


def _build_srode(name: str, match: ArchMatch, state_dict: Mapping[str, Tensor], overrides: Mapping[str, Any],
                 scale: int | None, source: str) -> DetectedNetwork:
    from srode_plugins.checkpoints import describe_mismatch
    from srode_plugins.components import build_component

    options, found_scale = _resolve_scale(name, match, scale, source)
    options.update(overrides)
    network = build_component("archs", {"type": name, **options}, key="detected network")
    problems = describe_mismatch(network.state_dict(), dict(state_dict))
    if problems:
        dist = catalog().find(DETECTOR_KIND, name)[0].distribution
        raise SrodeError(f"{source}: the {name} detector of {dist} built a network the weights do not fit "
                         f"({problems}); report it to {dist}, or name the arch with --arch / network_g")
    network.load_state_dict(dict(state_dict))
    dist = catalog().find(DETECTOR_KIND, name)[0].distribution
    return DetectedNetwork(name, found_scale, network.eval(), dist, options)


def _spandrel_network(state_dict: Mapping[str, Tensor]) -> Any | None:
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    try:
        descriptor = ModelLoader().load_from_state_dict(dict(state_dict))
    except UnsupportedModelError:
        return None
    return descriptor if isinstance(descriptor, ImageModelDescriptor) else None


def _key_summary(state_dict: Mapping[str, Tensor], first: int = 3) -> str:
    keys = list(state_dict)
    shown = ", ".join(f"{k} {tuple(state_dict[k].shape)}" for k in keys[:first])
    return f"{len(keys)} tensors (first: {shown})"


def detect(state_dict: Mapping[str, Tensor], *, source: str = "state dict", scale: int | None = None,
           overrides: Mapping[str, Any] | None = None) -> DetectedNetwork:
    """Recognise `state_dict` (bare network weights) and return the network built from it, weights loaded.

    srode's detectors are tried first, then spandrel. `scale` is needed only where the weights do not fix it;
    `overrides` replace detected constructor arguments (settings that leave no trace in the weights, e.g. an
    ODE solver). Raises SrodeError naming `source` when nothing recognises the weights or several do.
    """
    overrides = dict(overrides or {})
    matches = _srode_matches(state_dict)
    if len(matches) > 1:
        names = ", ".join(name for name, _ in matches)
        raise SrodeError(f"{source}: the weights fit several archs ({names}); name one with --arch or network_g")
    if matches:
        name, match = matches[0]
        return _build_srode(name, match, state_dict, overrides, scale, source)
    descriptor = _spandrel_network(state_dict)
    if descriptor is None:
        known = ", ".join(detector_names()) or "none installed"
        raise SrodeError(f"{source}: no installed detector ({known}) nor spandrel recognises these weights "
                         f"({_key_summary(state_dict)}); name the arch with --arch NAME --arch-opt KEY=VALUE, "
                         f"or network_g in the option file")
    if overrides:
        raise SrodeError(f"{source}: spandrel's {descriptor.architecture.name} takes no --arch-opt / network_g "
                         f"keys (got {', '.join(overrides)}); drop them")
    if scale is not None and scale != descriptor.scale:
        raise SrodeError(f"{source}: the weights are a x{descriptor.scale} {descriptor.architecture.name}, "
                         f"not x{scale}; drop the scale or pass {descriptor.scale}")
    return DetectedNetwork(descriptor.architecture.name, descriptor.scale, descriptor.model.eval(), SPANDREL)


def detect_file(path: str | os.PathLike[str], *, param_key: str | None = "params_ema", scale: int | None = None,
                overrides: Mapping[str, Any] | None = None) -> DetectedNetwork:
    """`detect` on the network weights of a checkpoint file (.pth or .safetensors; `param_key` as BasicSR)."""
    from srode_plugins.checkpoints import read_state_dict

    file = Path(path)
    if not file.is_file():
        raise SrodeError(f"checkpoint '{file}' does not exist")
    return detect(read_state_dict(file, param_key), source=f"checkpoint '{file}'", scale=scale,
                  overrides=overrides)


def spandrel_network(checkpoint: str) -> nn.Module:
    """Arch `SpandrelNet`: the module spandrel builds for `checkpoint` (its shapes pick the arch's sizes).

    Lets an option file train or test any arch spandrel knows: `network_g: {type: SpandrelNet, checkpoint: X}`.
    """
    from srode_plugins.checkpoints import read_state_dict

    descriptor = _spandrel_network(read_state_dict(checkpoint))
    if descriptor is None:
        raise OptionError(f"spandrel does not recognise '{checkpoint}'; name the arch's type instead",
                          key="network_g.checkpoint")
    return descriptor.model


def is_auto(network_opt: Any) -> bool:
    """`network_g` absent or `type: auto`: the arch comes from `path.pretrain_network_g`."""
    return network_opt is None or (isinstance(network_opt, Mapping) and network_opt.get("type") == "auto")


def resolve_auto_network(opts: OptionFile, network: str = "network_g") -> DetectedNetwork | None:
    """Fill `network_g` from the weights in `path.pretrain_network_g` when it is absent or `type: auto`.

    Keys written beside `type: auto` replace detected arguments. Returns the detected network (None when
    the option file names its arch).
    """
    from srode_plugins.options import resolve_path, weights_fix

    network_opt = opts.opt.get(network)
    if not is_auto(network_opt):
        return None
    key = f"pretrain_{network}"
    weights = (opts.opt.get("path") or {}).get(key)
    if not isinstance(weights, str) or not weights:
        raise opts.error(f"`{network}` is {'absent' if network_opt is None else 'type: auto'}, so the arch is read "
                         f"from path.{key}, which is not set: give the checkpoint there or describe the network, "
                         f"e.g. `{network}: {{type: EDSR, ...}}`", network)
    weights = resolve_path(opts, f"path.{key}", weights, fix=weights_fix(key, weights))
    overrides = {k: v for k, v in (network_opt or {}).items() if k != "type"}
    scale = opts.opt.get("scale")
    try:
        detected = detect_file(weights, param_key=(opts.opt.get("path") or {}).get(f"param_key_{network[-1]}",
                                                                                      "params_ema"),
                               scale=int(scale) if isinstance(scale, int) else None, overrides=overrides)
    except SrodeError as exc:
        raise opts.error(str(exc), f"path.{key}") from exc
    opts.opt[network] = (detected.network_options if detected.detected_by != SPANDREL
                         else {"type": SPANDREL_ARCH, "checkpoint": weights})
    opts.opt.setdefault("scale", detected.scale)
    return detected
