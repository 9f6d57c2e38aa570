"""Property-based option fuzzing: loading and validating any mutation of a valid option file either passes or
raises a SrodeError (an OptionError naming file and key) - never another exception."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srode_plugins import options, schema
from srode_plugins.errors import SrodeError

EXAMPLES = 600
TINY: dict[str, Any] = yaml.safe_load((Path(__file__).parent / "option_files" / "tiny_train.yml").read_text())


def key_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    if isinstance(node, dict):
        for key, value in node.items():
            paths.append((*prefix, key))
            paths += key_paths(value, (*prefix, key))
    return paths


PATHS = key_paths(TINY)
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["yes", "no", "on", "true", "2e-4", "1e3", "-1", "auto", "", "../x", "."]),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def typo(key: str, index: int, kind: int) -> str:
    i = index % (len(key) + 1)
    return [key[:i] + "x" + key[i:], key[:i] + key[i + 1:], key[:i] + key[i:][::-1][:1] + key[i + 1:],
            key.upper(), key + "s"][kind % 5] or "k"


@st.composite
def option_texts(draw: st.DrawFn) -> tuple[str, bytes]:
    """(what was done, the option file's bytes)."""
    opt = copy.deepcopy(TINY)
    kind = draw(st.sampled_from(["value", "typo", "delete", "bytes", "empty", "truncate"]))
    if kind in ("value", "typo", "delete"):
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(PATHS))
            parent: Any = opt
            for key in path[:-1]:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if not isinstance(parent, dict) or path[-1] not in parent:
                continue
            if kind == "value":
                parent[path[-1]] = draw(VALUES)
            elif kind == "typo":
                parent[typo(path[-1], draw(st.integers(0, 40)), draw(st.integers(0, 4)))] = parent.pop(path[-1])
            else:
                del parent[path[-1]]
        return kind, yaml.safe_dump(opt, allow_unicode=True).encode()
    text = yaml.safe_dump(opt).encode()
    if kind == "empty":
        return kind, draw(st.sampled_from([b"", b"\n", b"~\n", b"# nothing\n", b"[]\n", b"just text\n"]))
    at = draw(st.integers(0, len(text)))
    if kind == "truncate":
        return kind, text[:at]
    junk = draw(st.one_of(st.binary(min_size=1, max_size=4), st.sampled_from([b"\x00", b"\xe9", b"\xff\xfe", b"\t"])))
    return kind, text[:at] + junk + text[at:]


def test_any_mutated_option_file_passes_or_is_refused_with_an_option_error(tmp_path: Path) -> None:
    counts: Counter[str] = Counter()
    file = tmp_path / "fuzz.yml"

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(option_texts())
    def load_and_validate(case: tuple[str, bytes]) -> None:
        kind, data = case
        file.write_bytes(data)
        try:
            opts = options.load(file)
            schema.validate(opts, is_train=True)
        except SrodeError as exc:
            assert str(file) in str(exc), exc  # every refusal names the file
            counts[f"{kind}: refused"] += 1
        else:
            counts[f"{kind}: passed"] += 1

    load_and_validate()
    total = sum(counts.values())
    print(f"\noption fuzzer: {total} files, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    assert total >= 500
    assert sum(v for k, v in counts.items() if k.endswith("refused")) > total // 3
