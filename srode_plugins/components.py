"""Lazy component loading: import a plugin module on first use and register it into BasicSR.

Kinds that BasicSR has registries for (archs, models, losses, datasets, metrics) are registered there,
so stock BasicSR models build plugin archs and losses; other kinds live in `_SRODE_REGISTRY`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any

from srode_plugins import compat
from srode_plugins.discovery import (
    BASICSR_KINDS,
    FIRST_PARTY_COMPONENTS,
    Component,
    catalog,
)
from srode_plugins.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError

compat.apply()  # BasicSR must import before its registries are used

STOCK_LR_SCHEDULERS = ("MultiStepLR", "MultiStepRestartLR", "CosineAnnealingRestartLR")
# BasicSR registers some components as `<name>_basicsr` (so the Real-ESRGAN package can register the plain name)
# and its `Registry.get` falls back to that entry when the plain name is not registered.
BASICSR_SUFFIX = "_basicsr"
_SRODE_REGISTRY: dict[tuple[str, str], Any] = {}
_LOADED: dict[tuple[str, str], Any] = {}
BROKEN: dict[str, str] = {}


def basicsr_registry(kind: str) -> Any:
    from basicsr.utils import registry

    return {
        "archs": registry.ARCH_REGISTRY,
        "models": registry.MODEL_REGISTRY,
        "losses": registry.LOSS_REGISTRY,
        "datasets": registry.DATASET_REGISTRY,
        "metrics": registry.METRIC_REGISTRY,
    }[kind]


def stock_names(kind: str) -> list[str]:
    """Names BasicSR itself provides for `kind`, as an option file writes them (`RealESRGANModel`, not
    `RealESRGANModel_basicsr`); empty for srode-only kinds."""
    if kind in BASICSR_KINDS:
        loaded_plugin_names = {name for (k, name) in _LOADED if k == kind}
        plain = {key.removesuffix(BASICSR_SUFFIX) for key in basicsr_registry(kind).keys()}
        return sorted(plain - loaded_plugin_names)
    if kind == "lr_schedulers":
        # BaseModel.setup_schedulers (patched in compat) also takes any torch.optim.lr_scheduler class by name.
        import torch

        base = torch.optim.lr_scheduler.LRScheduler
        torch_names = {n for n, c in vars(torch.optim.lr_scheduler).items()
                       if isinstance(c, type) and issubclass(c, base) and c is not base and not n.startswith("_")}
        return sorted(set(STOCK_LR_SCHEDULERS) | torch_names)
    return []


def stock_key(kind: str, name: str) -> str | None:
    """The BasicSR registry entry that `Registry.get(name)` returns: `name` itself, else `name_basicsr`."""
    registry = basicsr_registry(kind)
    return next((key for key in (name, name + BASICSR_SUFFIX) if key in registry), None)


def known_names(kind: str) -> list[str]:
    return sorted(set(stock_names(kind)) | set(catalog().names(kind)))


def singular(kind: str) -> str:
    return kind[:-1] if kind.endswith("s") else kind


def _unknown(kind: str, name: str, file: str | None, key: str | None) -> UnknownComponentError:
    known = known_names(kind)
    lines = [f"unknown {singular(kind)} '{name}'."]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        lines.append(f"Did you mean: {', '.join(close)}?")
    other_kinds = catalog().kind_of(name)
    if other_kinds:
        lines.append(f"'{name}' is installed, but among the {', '.join(other_kinds)}, not the {kind}.")
    dist = FIRST_PARTY_COMPONENTS.get(name)
    if dist and not other_kinds:
        lines.append(f"It is provided by a first-party plugin: pip install {dist}")
    lines.append(f"Known {kind}: {', '.join(known) if known else '(none installed)'}.")
    return UnknownComponentError(" ".join(lines), file=file, key=key)


def _import_component(comp: Component) -> Any:
    info = catalog().plugins.get(comp.distribution.lower().replace("_", "-"))
    if info is not None and info.problems:
        raise PluginLoadError(f"plugin {comp.distribution} cannot be used: {info.status}")
    if comp.distribution in BROKEN:
        raise PluginLoadError(f"plugin {comp.distribution} is broken: {BROKEN[comp.distribution]}")
    try:
        module = importlib.import_module(comp.module)
        obj = getattr(module, comp.attribute) if comp.attribute else module
    except Exception as exc:  # a broken plugin must break only itself
        reason = f"importing {comp.value} failed: {type(exc).__name__}: {exc}"
        BROKEN[comp.distribution] = reason
        raise PluginLoadError(f"plugin {comp.distribution} is broken: {reason}") from exc
    return obj


def load_component(kind: str, name: str, *, file: str | None = None, key: str | None = None) -> Any:
    """Return the object named `name` of `kind`, importing and registering its plugin module if needed."""
    if (kind, name) in _LOADED:
        return _LOADED[(kind, name)]
    offers = catalog().find(kind, name)
    distributions = sorted({c.distribution for c in offers})
    if len(distributions) > 1:
        raise DuplicateComponentError(
            f"{singular(kind)} '{name}' is provided by several distributions: {', '.join(distributions)}. "
            f"Uninstall all but one (pip uninstall ...)."
        )
    if not offers:
        if kind in BASICSR_KINDS:
            stock = stock_key(kind, name)
            if stock is not None:
                return basicsr_registry(kind).get(stock)
        elif name in stock_names(kind):
            return name
        raise _unknown(kind, name, file, key)
    if kind in BASICSR_KINDS and name in basicsr_registry(kind):
        raise DuplicateComponentError(
            f"{singular(kind)} '{name}' is provided both by BasicSR itself and by {distributions[0]}; "
            f"the plugin must choose another name."
        )
    obj = _import_component(offers[0])
    if kind in BASICSR_KINDS:
        basicsr_registry(kind)._do_register(name, obj)
    else:
        _SRODE_REGISTRY[(kind, name)] = obj
    _LOADED[(kind, name)] = obj
    return obj


def build_component(kind: str, opt: Mapping[str, Any], *, file: str | None = None, key: str | None = None) -> Any:
    """Build `opt['type']` of `kind` with the other keys as keyword arguments."""
    if "type" not in opt:
        raise UnknownComponentError(f"missing 'type:' (one of: {', '.join(known_names(kind))})", file=file, key=key)
    kwargs = {k: v for k, v in opt.items() if k != "type"}
    factory = load_component(kind, str(opt["type"]), file=file, key=key)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise UnknownComponentError(f"cannot build {opt['type']}: {exc}", file=file, key=key) from exc


def list_components(kind: str) -> list[str]:
    return known_names(kind)
