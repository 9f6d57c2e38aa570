"""What an option key accepts, as data: a `Key` per key, a `Section` per mapping, and the one check of a value."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Kind = Literal["int", "float", "bool", "str", "list", "mapping", "any"]
KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a text",
              "list": "a list", "mapping": "a mapping (key: value lines)", "any": "any value"}


@dataclass(frozen=True)
class Key:
    """One option key: its kind, range, accepted literal choices, and (for mappings) the section inside.

    `choices` are accepted besides the kind (`num_gpu`: `auto` or a whole number); `component` names the
    component kind whose `type:` the mapping names (its keys are then checked against the constructor).
    """

    doc: str
    kind: Kind = "any"
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    required: bool = False
    section: Section | None = None
    component: str | None = None
    example: str = ""

    def describe(self) -> str:
        """The accepted values in words, e.g. `a whole number >= 1`, `auto | bf16 | fp16 | null`."""
        words = [" | ".join(_literal(c) for c in self.choices)] if self.choices else []
        if self.kind != "any" or not words:
            words.append(KIND_WORDS[self.kind] + self._range())
        if self.nullable:
            words.append("null")
        return " or ".join(words)

    def _range(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive_minimum else '>='} {_number(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"{'<' if self.exclusive_maximum else '<='} {_number(self.maximum)}")
        return (" " + " and ".join(parts)) if parts else ""


@dataclass(frozen=True)
class Section:
    """The keys of one mapping. `patterns` are shell-style (`network_*`); an `open` section accepts any other key."""

    keys: Mapping[str, Key] = field(default_factory=dict)
    patterns: tuple[tuple[str, Key], ...] = ()
    open: bool = False
    title: str = ""

    def lookup(self, name: str) -> Key | None:
        if name in self.keys:
            return self.keys[name]
        return next((key for pattern, key in self.patterns if fnmatch.fnmatchcase(name, pattern)), None)

    def names(self) -> list[str]:
        return [*self.keys, *(pattern for pattern, _ in self.patterns)]

    def with_keys(self, extra: Mapping[str, Key], *, replace_known: bool = True, open: bool = False) -> Section:
        """This section plus `extra` keys. With `replace_known`, an extra key replaces a known one (a mapping
        merges into the known section); without, only names this section does not cover are added."""
        keys = dict(self.keys)
        for name, key in extra.items():
            mine = self.lookup(name)
            if mine is None:
                keys[name] = key
            elif not replace_known:
                continue
            elif mine.section is not None and key.section is not None:
                keys[name] = replace(mine, section=mine.section.with_keys(key.section.keys, open=key.section.open))
            else:
                keys[name] = key
        return replace(self, keys=keys, open=self.open or open)


@dataclass(frozen=True)
class Problem:
    """Why a value is refused: what is wrong and how to fix it (the caller adds file and key)."""

    what: str
    fix: str


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def matches_choice(value: Any, choices: tuple[Any, ...]) -> bool:
    # `0 == False` and `1 == True`: a choice matches only a value of its own type
    return any(type(value) is type(choice) and value == choice for choice in choices)


def example(name: str, key: Key) -> str:
    if key.example:
        return f"e.g. `{name}: {key.example}`"
    if key.choices:
        return f"e.g. `{name}: {_literal(key.choices[0])}`"
    sample = {"int": int(key.minimum or 0) + (1 if key.exclusive_minimum else 0) or 1, "float": 0.5,
              "bool": "true", "str": "text", "list": "[1, 2]", "mapping": "{...}"}.get(key.kind)
    return f"e.g. `{name}: {sample}`" if sample is not None else ""


def check(name: str, key: Key, value: Any) -> tuple[Any, Problem | None]:
    """Check `value` of key `name` against `key`. Returns the value (numbers given as text converted) and
    the problem, if any."""
    if value is None:
        if key.nullable or matches_choice(None, key.choices):
            return None, None
        return value, Problem("value None (`~`) is not allowed here", _fix(name, key))
    if matches_choice(value, key.choices):
        return value, None
    if key.kind == "any":
        if key.choices and not isinstance(value, (dict, list)):
            return value, Problem(f"value {value!r} is not one of {' | '.join(map(_literal, key.choices))}",
                                  _fix(name, key))
        return value, None
    if key.kind in ("int", "float"):
        return _check_number(name, key, value)
    expected = {"bool": bool, "str": str, "list": (list, tuple), "mapping": dict}[key.kind]
    if not isinstance(value, expected):
        return value, Problem(_wrong_type(value, key), _fix(name, key))
    return value, None


def _wrong_type(value: Any, key: Key) -> str:
    if key.kind == "bool" and isinstance(value, (str, int)):
        return f"value {value!r} must be a real YAML boolean (unquoted true or false), not {type(value).__name__}"
    return f"value {value!r} has the wrong type ({type(value).__name__}); expected {key.describe()}"


def _fix(name: str, key: Key) -> str:
    hint = example(name, key)
    use = f"use {key.describe()}" + (f", {hint}" if hint else "") + "."
    return f"{key.doc[0].upper()}{key.doc[1:].rstrip('.')}: {use}" if key.doc else use[0].upper() + use[1:]


def _check_number(name: str, key: Key, value: Any) -> tuple[Any, Problem | None]:
    fix = _fix(name, key)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value, Problem(f"value {value!r} must be a number", fix)
    try:
        number = float(value)
    except ValueError:
        return value, Problem(f"value {value!r} must be a number", fix)
    if not math.isfinite(number):
        return value, Problem(f"value {value!r} must be a finite number", fix)
    if key.kind == "int":
        if not number.is_integer():
            return value, Problem(f"value {value!r} must be a whole number", fix)
        converted: Any = int(number) if not isinstance(value, int) else value
    else:
        converted = number if isinstance(value, str) else value
    low, high = key.minimum, key.maximum
    if low is not None and (number < low or (key.exclusive_minimum and number == low)):
        return value, Problem(f"value {value!r} is out of range", fix)
    if high is not None and (number > high or (key.exclusive_maximum and number == high)):
        return value, Problem(f"value {value!r} is out of range", fix)
    return converted, None
