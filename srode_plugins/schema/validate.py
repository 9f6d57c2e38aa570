"""Walk an option dict against the schema: unknown keys, types, ranges, required keys and component arguments."""

from __future__ import annotations

import difflib
from typing import Any

from srode_plugins.engine.wandb_logging import check_wandb_options
from srode_plugins.errors import OptionError
from srode_plugins.options import OptionFile, extra_kind_references, get_path
from srode_plugins.schema import core, derive, resolve
from srode_plugins.schema.spec import Key, Section, check, example

PHASES = ("train", "val", "test")
AUTO_ARCH = "auto"  # `network_g: {type: auto}` (or no network_g): the arch is recognised from the weights


class OptionWalk:
    """One validation pass over `opts`; counts the components it checked."""

    def __init__(self, opts: OptionFile) -> None:
        self.opts = opts
        self.components: list[str] = []

    def error(self, message: str, key: str | None) -> OptionError:
        return self.opts.error(message, key)

    def mapping(self, section: Section, node: dict[Any, Any], path: str) -> None:
        for name in list(node):
            key_path = f"{path}.{name}" if path else str(name)
            if not isinstance(name, str):
                raise self.error(f"key {name!r} must be text (a YAML key such as `num_feat:`)", key_path)
            key = section.lookup(name)
            if key is None:
                if section.open:
                    continue
                raise self.unknown(section, name, key_path)
            self.value(name, key, node, key_path)
        for name, key in section.keys.items():
            if key.required and node.get(name) is None:
                raise self.missing(section, name, key, f"{path}.{name}" if path else name)

    def value(self, name: str, key: Key, parent: dict[str, Any], key_path: str) -> None:
        value, problem = check(name, key, parent[name])
        if problem is not None:
            raise self.error(f"{problem.what}. {problem.fix}", key_path)
        if value is not parent[name]:
            parent[name] = value
        if isinstance(value, dict) and key.section is not None:
            section = key.section
            if key.component is not None:
                section = self.component(key.component, value, section, key_path)
            self.mapping(section, value, key_path)

    def component(self, kind: str, node: dict[str, Any], base: Section, key_path: str,
                  plugin_kind: bool = False) -> Section:
        name = node.get("type")
        if name is None:
            return base  # the section's required `type` names the problem
        if not isinstance(name, str):
            raise self.error(f"value {name!r} must be a component name (text), e.g. `type: EDSR`",
                             f"{key_path}.type")
        obj = resolve.load(kind, name, file=str(self.opts.file), key=f"{key_path}.type")
        self.components.append(f"{key_path}: {name}")
        return resolve.component_section(kind, obj, base, plugin_kind=plugin_kind)

    def unknown(self, section: Section, name: str, key_path: str) -> OptionError:
        close = difflib.get_close_matches(name, list(section.keys), n=3, cutoff=0.6)
        did = f" Did you mean: {', '.join(close)}?" if close else ""
        elsewhere = [title for title, other in core.SECTIONS.items() if other is not section and name in other.keys]
        if elsewhere and not close:
            did = f" '{name}' is a key of {', '.join(core.SECTIONS[t].title for t in elsewhere)}: move it there?"
        where = section.title or "this section"
        return self.error(f"unknown key '{name}' in {where}.{did} Known keys: {', '.join(section.names())}. "
                          f"Fix the spelling or remove the key (`basicsr options schema` lists them).", key_path)

    def missing(self, section: Section, name: str, key: Key, key_path: str) -> OptionError:
        if key.doc == "required":  # a constructor argument without a default
            return self.error(f"missing: {section.title} has no default for '{name}'. Add it, e.g. `{name}: ...`.",
                              key_path)
        hint = example(name, key)
        return self.error(f"missing. Add the {key.doc}" + (f", {hint}." if hint else "."), key_path)


def validate(opts: OptionFile, *, is_train: bool) -> list[str]:
    """Check `opts` against the schema of the core sections and of every component it names.

    Imports only the components the file names. Changes nothing but numbers written as text ('2e-4') or
    whole numbers written as floats, which become numbers of the key's kind. Returns the components checked
    as 'key path: name'. Raises OptionError naming the file, key path, value and the fix.
    """
    walk = OptionWalk(opts)
    opt = opts.opt
    model_type = opt.get("model_type")
    top = core.TOP
    walk.mapping(Section({"model_type": top.keys["model_type"]}, open=True), opt, "")
    top = walk.component("models", {"type": model_type}, top, "model_type")
    if _network_from_weights(opt):
        top = derive.place(top, "network_g", Key("read from path.pretrain_network_g", "any", nullable=True))
    walk.mapping(top, opt, "")
    check_name(opts)
    check_phases(opts, is_train)
    if is_train:
        check_wandb_options(opt, str(opts.file))
    check_plugin_kinds(walk)
    return walk.components


def _network_from_weights(opt: dict[str, Any]) -> bool:
    """Whether the engine reads `network_g` from `path.pretrain_network_g` (absent or `type: auto`)."""
    network = opt.get("network_g")
    auto = network is None or (isinstance(network, dict) and network.get("type") == AUTO_ARCH)
    return auto and isinstance(get_path(opt, "path.pretrain_network_g"), str)


def check_name(opts: OptionFile) -> None:
    name = opts.opt["name"]
    if not name.strip() or name.strip() in (".", "..") or any(c in name for c in "/\\\0"):
        raise opts.error(f"value {name!r}: the name is the experiment's folder (experiments/<name>/, "
                         f"results/<name>/), so it must be non-empty, hold no '/' or '\\\\', and not be '.' or '..'. "
                         f"Use a plain name, e.g. `name: EDSR_x4`.", "name")


def check_phases(opts: OptionFile, is_train: bool) -> None:
    datasets = opts.opt["datasets"]
    for phase in datasets:
        if phase.split("_")[0] not in PHASES:
            raise opts.error("dataset phases are 'train', 'val*' or 'test*'", f"datasets.{phase}")
    if not is_train:
        return
    if "train" not in datasets:
        raise opts.error("training needs a 'train' dataset", "datasets.train")
    required = (("train", "missing. Add a `train:` section (optimizers, losses, total_iter)."),
                ("train.total_iter", "missing. How many iterations to train, e.g. `total_iter: 1000`."),
                ("datasets.train.batch_size_per_gpu", "missing. The training batch size, e.g. "
                                                      "`batch_size_per_gpu: 16`."))
    for key_path, message in required:
        if get_path(opts.opt, key_path) is None:
            raise opts.error(message, key_path)


def check_plugin_kinds(walk: OptionWalk) -> None:
    """Plugin-defined components (samplers, schedules ...) inside sections their model reads: their keyword
    arguments against the constructor (unknown keys, types; required ones are the plugin's to pass)."""
    from srode_plugins.discovery import catalog

    kinds = [k for k in catalog().kinds() if k not in resolve.CORE_KINDS]
    if not kinds:
        return
    for kind, _, type_path in list(extra_kind_references(walk.opts.opt, kinds)):
        path = type_path.removesuffix(".type")
        node = node_at(walk.opts.opt, path)
        if not isinstance(node, dict):
            continue
        section = walk.component(kind, node, Section({"type": Key("component name", "str")}), path,
                                 plugin_kind=True)
        walk.mapping(section, node, path)


def node_at(opt: dict[str, Any], path: str) -> Any:
    """The value at a dotted path whose parts may index lists (`val.sampler_sweep.samplers.0`)."""
    node: Any = opt
    for part in path.split(".") if path else []:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
