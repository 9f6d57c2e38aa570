"""The option reference printed by `basicsr options schema` and written to docs/options.md, from the schema."""

from __future__ import annotations

from typing import Any

from srode_plugins.errors import SrodeError
from srode_plugins.schema import core, resolve
from srode_plugins.schema.spec import Key, Section

# The core section each component kind's mapping starts from.
KIND_SECTIONS: dict[str, Section] = {
    "archs": core.NETWORK, "models": core.TOP, "losses": core.LOSS, "datasets": core.DATASET,
    "metrics": core.METRIC, "lr_schedulers": core.SCHEDULER, "optimizers": core.OPTIMIZER,
}
ORDER = ("top", "datasets", "io_backend", "train", "optim", "loss", "scheduler", "val", "metric", "tile", "logger",
         "wandb", "path", "dist_params", "network")
MARKDOWN_HEAD = """# Option reference

Generated from the schema in `srode_plugins/schema/` by `basicsr options schema --markdown > docs/options.md`
(a test keeps it in sync). Check a file with `basicsr options check FILE.yml [--test]`.

Every section is strict: an unknown key is an error that names the nearest known keys. On top of these core
keys, each component adds its own: a network (`network_*`), loss (`train.*_opt`), optimizer (`train.optim_*`),
LR scheduler, metric or plugin component takes the keyword arguments of its constructor (types from its hints
or defaults); a model adds the top-level, `train:` and `val:` keys its source reads (e.g. RealESRNetModel's
degradation keys, SRGANModel's `train.net_d_iters`); a dataset adds the keys its source reads. Components
refine this with an `option_schema` class attribute (docs/plugin-contract.md). `basicsr options schema NAME`
prints the keys of one component (`EDSR`, `SRGANModel`, `L1Loss`, `Adam`, ...) or section (`train`, `val`, ...).

Booleans are YAML's `true` / `false` only (`yes`, `on`, `1` and `"true"` are refused); numbers written as text
(`'2e-4'`) are read as numbers; `~` (null) is accepted only where listed.
"""


def sections() -> dict[str, Section]:
    return {name: core.SECTIONS.get(name) or core.NETWORK for name in ORDER}


def section_text(section: Section) -> str:
    lines = [f"{section.title or 'section'}{'  (open: other keys allowed)' if section.open else ''}"]
    rows = _rows(section)
    width = max((len(name) for name, _, _ in rows), default=0)
    lines += [f"  {name:<{width}}  {accepts}" + (f"  - {doc}" if doc else "") for name, accepts, doc in rows]
    return "\n".join(lines)


def _rows(section: Section, markdown: bool = False) -> list[tuple[str, str, str]]:
    rows = [(name + (" (required)" if key.required else ""), _accepts(key, markdown), _doc(key))
            for name, key in section.keys.items()]
    rows += [(pattern, _accepts(key, markdown), _doc(key)) for pattern, key in section.patterns]
    return rows


def _accepts(key: Key, markdown: bool = False) -> str:
    if key.kind == "mapping" and key.section is not None and key.section.title:
        title = f"`{key.section.title}`" if markdown else key.section.title
        return f"mapping, see {title}" + (" or null" if key.nullable else "")
    return _escape(key.describe()) if markdown else key.describe()


def _escape(text: str) -> str:
    """Markdown table cells: `|`, `*` and `<...>` would end the cell, start emphasis or vanish as HTML."""
    return text.replace("|", "\\|").replace("*", "\\*").replace("<", "&lt;")


def _doc(key: Key) -> str:
    return key.doc if key.doc not in ("required",) else ""


def markdown() -> str:
    parts = [MARKDOWN_HEAD]
    for section in sections().values():
        parts.append(f"## `{section.title}`\n")
        if section.open:
            parts.append("Open: other keys are allowed.\n")
        parts.append("| key | accepts | meaning |\n| --- | --- | --- |")
        for name, accepts, doc in _rows(section, markdown=True):
            key, _, required = name.partition(" ")
            parts.append(f"| `{key}`{' ' + required if required else ''} | {accepts} | {_escape(doc)} |")
        parts.append("")
    return "\n".join(parts)


def reference(name: str | None = None) -> str:
    """The reference of every core section, of one section (`train`, `val`, ...) or of one component."""
    if name is None:
        return "\n\n".join(section_text(s) for s in sections().values())
    by_title = {s.title: s for s in sections().values()}
    section = core.SECTIONS.get(name) or by_title.get(name)
    if section is not None:
        return section_text(section)
    found = _components_named(name)
    if not found:
        raise SrodeError(f"'{name}' is neither a section ({', '.join(ORDER)}) nor an installed component "
                         f"(`basicsr plugins list` lists them)")
    texts = []
    for kind, obj in found:
        base = KIND_SECTIONS.get(kind, Section({"type": Key("component name", "str", required=True)}))
        plugin_kind = kind not in resolve.CORE_KINDS
        text = f"[{kind}] " + section_text(resolve.component_section(kind, obj, base, plugin_kind=plugin_kind))
        texts.append(text + (_model_keys(obj) if kind == "models" else ""))
    return "\n\n".join(texts)


def _components_named(name: str) -> list[tuple[str, Any]]:
    import torch

    from srode_plugins.components import known_names
    from srode_plugins.discovery import catalog

    kinds = [k for k in catalog().kinds() if name in known_names(k)]

    if isinstance(getattr(torch.optim, name, None), type):
        kinds.append("optimizers")
    if name in resolve.BASICSR_SCHEDULERS and "lr_schedulers" not in kinds:
        kinds.append("lr_schedulers")
    return [(kind, resolve.load(kind, name, file=None, key=name)) for kind in kinds]


def _model_keys(model: type) -> str:
    """The keys a model adds below the top level (`train.net_d_iters`, `resshift`, ...)."""
    from srode_plugins.schema import derive

    added = {path: key for path, key in {**derive.read_options(model, depth=2), **derive.declared(model)}.items()
             if _is_new(path)}
    rows = [f"  {path}  {key.describe()}  - {key.doc}" for path, key in sorted(added.items())]
    return ("\nkeys this model adds or refines:\n" + "\n".join(rows)) if rows else ""


def _is_new(path: str) -> bool:
    section: Section | None = core.TOP
    for part in path.split("."):
        key = section.lookup(part) if section is not None else None
        if key is None:
            return True
        section = key.section
    return False
