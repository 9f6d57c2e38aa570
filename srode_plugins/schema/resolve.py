"""The schema of the component a mapping's `type:` names: the core keys of its section, refined by what the
component itself takes (constructor signature, keys its source reads, its declared `option_schema`)."""

from __future__ import annotations

import difflib
from typing import Any

from srode_plugins.errors import UnknownComponentError
from srode_plugins.schema import derive
from srode_plugins.schema.spec import Key, Section

# BasicSR's setup_schedulers builds these two itself (MultiStepLR is its MultiStepRestartLR).
BASICSR_SCHEDULERS = {"MultiStepLR": "MultiStepRestartLR", "MultiStepRestartLR": "MultiStepRestartLR",
                      "CosineAnnealingRestartLR": "CosineAnnealingRestartLR"}
# BasicSR's metric functions take **kwargs only to ignore them: a typo there would pass silently.
SINK_KWARGS_MODULES = ("basicsr.metrics",)
# Kinds whose constructor receives the whole option mapping (keys read from the source, not the signature).
OPTION_DICT_KINDS = ("datasets", "models")
# Arguments the caller passes, not the option file.
CALLER_ARGUMENTS = {"metrics": ("img", "img2"), "lr_schedulers": ("optimizer",), "optimizers": ("params",)}
CORE_KINDS = ("archs", "models", "losses", "datasets", "metrics", "lr_schedulers", "optimizers")


def load(kind: str, name: str, *, file: str | None, key: str) -> Any:
    """The component object (class or function) `name` of `kind`; imports only the plugin that provides it."""
    if kind == "optimizers":
        return optimizer_class(name, file=file, key=key)
    if kind == "lr_schedulers":
        stock = BASICSR_SCHEDULERS.get(name)
        if stock is not None:
            from basicsr.models import lr_scheduler

            return getattr(lr_scheduler, stock)
        import torch

        found = getattr(torch.optim.lr_scheduler, name, None)
        if isinstance(found, type):
            return found
    from srode_plugins.components import load_component

    return load_component(kind, name, file=file, key=key)


def optimizer_class(name: str, *, file: str | None, key: str) -> type:
    import torch

    known = sorted(n for n, c in vars(torch.optim).items()
                   if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer)
    if name in known:
        return getattr(torch.optim, name)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownComponentError(f"unknown optimizer '{name}'.{hint} Known (torch.optim): {', '.join(known)}.",
                                file=file, key=key)


def component_section(kind: str, obj: Any, base: Section, *, plugin_kind: bool = False) -> Section:
    """`base` (the core keys of the section, or none) refined by what `obj` takes."""
    title = f"{base.title or kind} ({getattr(obj, '__name__', obj)})"
    if kind in OPTION_DICT_KINDS and isinstance(obj, type):
        section = base
        reads = derive.read_keys(obj)
        for path, key in derive.read_options(obj, depth=1 if kind == "datasets" else 2).items():
            section = derive.place(section, path, key, replace_known=False)
        if kind == "datasets" and not reads:
            section = Section(section.keys, section.patterns, open=True, title=section.title)
    else:
        section = _signature_section(kind, obj, base, plugin_kind)
    for path, key in derive.declared(obj).items():
        section = derive.place(section, path, key)
    return Section(section.keys, section.patterns, section.open, title)


def _signature_section(kind: str, obj: Any, base: Section, plugin_kind: bool) -> Section:
    skip = CALLER_ARGUMENTS.get(kind, ())
    sink = getattr(obj, "__module__", "").startswith(SINK_KWARGS_MODULES)
    derived = derive.signature_section(obj, skip=skip, var_keyword_open=not sink, enforce_required=not plugin_kind)
    if derived is None:
        return Section(base.keys, base.patterns, open=True, title=base.title)
    keys: dict[str, Key] = {"type": base.keys.get("type") or Key("component name", "str", required=True)}
    for name, key in derived.keys.items():
        core = base.keys.get(name)
        keys[name] = _refined(core, key) if core is not None else key
    if sink and "better" in base.keys:  # read by BasicSR's validation loop; its metrics' **kwargs ignore it
        keys["better"] = base.keys["better"]
    return Section(keys, open=derived.open, title=base.title)


def _refined(core: Key, derived: Key) -> Key:
    """The core's typed key, required when the constructor has no default for it."""
    from dataclasses import replace

    return replace(core, required=core.required or derived.required)
