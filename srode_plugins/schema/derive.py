"""Schemas derived from the components themselves.

- Constructor keyword arguments (archs, losses, metrics, LR schedulers, optimizers, plugin kinds) come from
  `inspect.signature` and the type hints, else the defaults' types.
- Components that take the whole option dict (models, datasets) are read with `ast`: every key their source
  reads from `opt` / `self.opt` (`opt['gt_size']`, `self.opt['train'].get('net_d_iters')`, `train_opt = ...`).
- A component may refine both with a class attribute `option_schema` (see docs/plugin-contract.md).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
import typing
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from typing import Any

from srode_plugins.schema.spec import Key, Section

OPTION_SCHEMA_ATTRIBUTE = "option_schema"
# Keys the engine fills before a model is built; an option file never writes them.
FILLED_BY_ENGINE = frozenset({"is_train", "dist", "rank", "world_size", "root_path", "auto_resume", "opt_file"})
_SKIPPED_MODULES = ("builtins", "torch", "typing", "abc", "collections")
_PYTHON_KINDS: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str", list: "list",
                                  tuple: "list", dict: "mapping"}


# ---------------------------------------------------------------- constructor signatures


def signature_section(obj: Any, *, skip: tuple[str, ...] = (), title: str = "", var_keyword_open: bool = True,
                      enforce_required: bool = True) -> Section | None:
    """The keyword arguments of `obj` (a class or function) but the parameters named in `skip` (what its caller
    passes: a metric's images, a scheduler's optimizer).

    `**kwargs` makes the section open unless `var_keyword_open` is False (BasicSR's metrics take `**kwargs`
    only to ignore them). None when the signature cannot be read (builtins, C extensions).
    """
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    hints = _type_hints(obj)
    keys: dict[str, Key] = {}
    is_open = False
    for parameter in signature.parameters.values():
        if parameter.name in skip:
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            is_open = var_keyword_open
        elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
            keys[parameter.name] = parameter_key(parameter, hints.get(parameter.name), enforce_required)
    return Section(keys, open=is_open, title=title)


def _type_hints(obj: Any) -> dict[str, Any]:
    target = obj.__init__ if isinstance(obj, type) else obj
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: fall back to the defaults
        return {}


def parameter_key(parameter: inspect.Parameter, hint: Any, enforce_required: bool = True) -> Key:
    default = parameter.default
    required = default is inspect.Parameter.empty
    kind, nullable, choices = _kind_from_hint(hint)
    if kind == "any" and not choices and not required and default is not None:
        # an int default says little (EDSR's res_scale=1 is set to 0.1): any number
        kind = "float" if type(default) is int else _PYTHON_KINDS.get(type(default), "any")
    nullable = nullable or default is None
    doc = "required" if required else f"default {default!r}"
    sample = "" if required or default is None else _yaml_literal(default)
    return Key(doc, kind, choices=choices, nullable=nullable, required=required and enforce_required, example=sample)


def _yaml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        value = list(value)
    return repr(value) if isinstance(value, str) else str(value)


def _kind_from_hint(hint: Any) -> tuple[str, bool, tuple[Any, ...]]:
    """(kind, nullable, choices) of a type hint; ("any", False, ()) when it says nothing checkable."""
    if hint is None or hint is Any:
        return "any", False, ()
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "any", False, tuple(args)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        kind, _, choices = _kind_from_hint(rest[0]) if len(rest) == 1 else _numeric_union(rest)
        return kind, len(rest) < len(args), choices
    if origin is not None:
        import collections.abc as abc

        if origin in (list, tuple, abc.Sequence):
            return "list", False, ()
        if origin in (dict, abc.Mapping):
            return "mapping", False, ()
        return "any", False, ()
    if isinstance(hint, type):
        return _PYTHON_KINDS.get(hint, "any"), False, ()
    return "any", False, ()


def _numeric_union(members: list[Any]) -> tuple[str, bool, tuple[Any, ...]]:
    return ("float" if set(members) <= {int, float} else "any"), False, ()


# ---------------------------------------------------------------- keys a component's source reads


@cache
def read_keys(cls: type) -> frozenset[tuple[str, ...]]:
    """Key paths the source of `cls` (and its bases) reads from its option dict. Empty when no source."""
    found: set[tuple[str, ...]] = set()
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] in _SKIPPED_MODULES:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found |= _function_reads(node)
    return frozenset(found)


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _Reads:
    """Key paths one function reads: `opt[...]` (the constructor's argument), `self.opt[...]`, and names bound
    to a part of them (`train_opt = self.opt['train']`)."""

    def __init__(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        takes_opt = function.name == "__init__" and any(a.arg == "opt" for a in function.args.args)
        self.roots = {"opt"} if takes_opt else set()
        self.bound: dict[str, tuple[str, ...]] = {}

    def path(self, node: ast.AST) -> tuple[str, ...] | None:
        if isinstance(node, ast.Attribute) and node.attr == "opt" and isinstance(node.value, ast.Name) \
                and node.value.id == "self":
            return ()
        if isinstance(node, ast.Name):
            return () if node.id in self.roots else self.bound.get(node.id)
        if isinstance(node, ast.Subscript):
            return self._child(node.value, node.slice)
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault"):
                return self._child(func.value, node.args[0])
            if isinstance(func, ast.Name) and func.id in ("dict", "deepcopy"):
                return self.path(node.args[0])
        if isinstance(node, ast.BoolOp):
            return self.path(node.values[0])
        return None

    def _child(self, parent: ast.AST, key: ast.AST) -> tuple[str, ...] | None:
        base, name = self.path(parent), _text(key)
        return base + (name,) if base is not None and name is not None else None


def _function_reads(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[tuple[str, ...]]:
    reads = _Reads(function)
    for _ in range(2):  # names bound from names bound earlier
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                bound = reads.path(node.value)
                if bound is not None:
                    reads.bound[node.targets[0].id] = bound
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(function):
        path = reads.path(node)
        if path:
            found.add(path)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)):
            base, name = reads.path(node.comparators[0]), _text(node.left)
            if base is not None and name is not None:
                found.add(base + (name,))
    return found


def read_options(cls: type, *, depth: int) -> dict[str, Key]:
    """{dotted key path: open key} for each key `cls` reads, up to `depth` levels (a key the component reads
    is open below: it checks it itself)."""
    owner = f"read by {cls.__name__}"
    return {".".join(path): Key(owner, "any", nullable=True) for path in sorted(read_keys(cls))
            if path[0] not in FILLED_BY_ENGINE and len(path) <= depth}


# ---------------------------------------------------------------- declared refinements


def declared(obj: Any) -> dict[str, Key]:
    """The `option_schema` a component declares: {dotted key path: spec}, each spec a `Key`, a `Section`, a
    Python type (int, float, bool, str, list, dict), a tuple of allowed values, a dict of specs (a mapping
    with exactly those keys), a class or function (a mapping of its keyword arguments), or None (anything)."""
    schema = getattr(obj, OPTION_SCHEMA_ATTRIBUTE, None)
    if not isinstance(schema, Mapping):
        return {}
    return {str(path): to_key(spec, f"declared by {getattr(obj, '__name__', obj)}") for path, spec in schema.items()}


def to_key(spec: Any, doc: str) -> Key:
    if isinstance(spec, Key):
        return spec
    if isinstance(spec, Section):
        return Key(doc, "mapping", section=spec)
    if spec is None:
        return Key(doc, "any", nullable=True)
    if isinstance(spec, type) and spec in _PYTHON_KINDS:
        kind = _PYTHON_KINDS[spec]
        return Key(doc, kind, section=Section(open=True) if kind == "mapping" else None)  # type: ignore[arg-type]
    if isinstance(spec, tuple):
        return Key(doc, "any", choices=spec)
    if isinstance(spec, Mapping):
        return Key(doc, "mapping", section=Section({str(k): to_key(v, doc) for k, v in spec.items()}))
    if callable(spec):
        section = signature_section(spec, enforce_required=True)
        return Key(doc, "mapping", section=section or Section(open=True), nullable=True)
    raise TypeError(f"{doc}: option_schema spec {spec!r} is not a Key, Section, type, tuple, dict or callable")


def place(section: Section, path: str, key: Key, *, replace_known: bool = True) -> Section:
    """`section` with `key` at the dotted `path` below it. Without `replace_known`, a key this section
    already covers (by name or pattern) is kept as it is."""
    head, _, rest = path.partition(".")
    if not rest:
        return section.with_keys({head: key}, replace_known=replace_known)
    parent = section.lookup(head)
    if parent is None:
        parent = Key(key.doc, "mapping", section=Section())
    elif parent.section is None:
        if not replace_known:
            return section
        parent = replace(parent, kind="mapping", section=Section())
    assert parent.section is not None
    updated = replace(parent, section=place(parent.section, rest, key, replace_known=replace_known))
    return replace(section, keys={**section.keys, head: updated})
