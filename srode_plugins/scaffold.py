"""`basicsr plugins new NAME`: generate a complete, installable plugin distribution.

The generated plugin (``<dest>/srode-plugin-NAME``) holds a pyproject.toml with its entry points, a
package with an example arch (and, with --kind, an example model and loss), an option file on the
embedded demo data, conformance tests and a README. It installs with `pip install -e`, shows up in
`basicsr plugins list`, trains with its option file and passes its tests without edits.

Templates live in `srode_plugins/templates/plugin/` (`string.Template`, `${name}` placeholders).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from srode_plugins import API_VERSION, __version__
from srode_plugins.discovery import catalog
from srode_plugins.errors import SrodeError

TEMPLATES = Path(__file__).resolve().parent / "templates" / "plugin"
KINDS = ("arch", "model", "loss")
# Kind -> its entry-point group `srode.<group>` and module `<group>.py` in the generated package.
KIND_GROUPS = {"arch": "archs", "model": "models", "loss": "losses"}
DIST_PREFIX = "srode-plugin-"
_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")


class ScaffoldError(SrodeError):
    """`basicsr plugins new` was given a name, kind or destination it cannot use."""


@dataclass(frozen=True)
class PluginNames:
    """Every name the generated plugin uses, derived from the family name (e.g. "fast-sr")."""

    family: str  # fast-sr
    dist: str  # srode-plugin-fast-sr
    package: str  # srode_fast_sr
    options_name: str  # fast_sr
    arch: str  # FastSrSR
    model: str  # FastSrModel
    loss: str  # FastSrLoss

    @property
    def option_stem(self) -> str:
        return f"{self.arch}_x4_demo"

    @classmethod
    def from_family(cls, name: str) -> PluginNames:
        family = name.removeprefix(DIST_PREFIX)
        if not _NAME.fullmatch(family):
            suggestion = re.sub(r"[^a-z0-9]+", "-", family.lower()).strip("-")
            hint = f" e.g. '{suggestion}'" if suggestion and _NAME.fullmatch(suggestion) else ""
            raise ScaffoldError(f"NAME '{name}': use lower-case letters, digits and single '-' or '_' between "
                                f"them, starting with a letter{hint}")
        snake = family.replace("-", "_")
        camel = "".join(part.capitalize() for part in re.split(r"[-_]", family))
        return cls(family=family, dist=f"{DIST_PREFIX}{family}", package=f"srode_{snake}", options_name=snake,
                   arch=f"{camel}SR", model=f"{camel}Model", loss=f"{camel}Loss")


def parse_kinds(text: str) -> tuple[str, ...]:
    """'arch,model' -> ('arch', 'model'); the arch is always generated (the option file trains it)."""
    requested = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in requested if k not in KINDS]
    if unknown:
        raise ScaffoldError(f"--kind: unknown kind(s) {', '.join(unknown)}; choose from {','.join(KINDS)} "
                            f"(comma-separated, e.g. --kind arch,model,loss)")
    return tuple(k for k in KINDS if k == "arch" or k in requested)


def core_requirement(version: str = __version__) -> str:
    """The `srode-plugins` requirement matching this core: `>=0.1,<0.2` for 0.1.x, `>=1.2,<2` for 1.2.x."""
    major, minor = (int(p) for p in version.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"srode-plugins>={major}.{minor},<{upper}"


def _snake(camel: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", camel).lower()


def _check_free(names: PluginNames, kinds: tuple[str, ...]) -> None:
    """Refuse names that would clash with an importable package or an installed component."""
    if importlib.util.find_spec(names.package) is not None:
        raise ScaffoldError(f"NAME '{names.family}': a package '{names.package}' is already importable here; "
                            f"choose another NAME")
    cat = catalog()
    wanted = {"arch": ("archs", names.arch), "model": ("models", names.model), "loss": ("losses", names.loss)}
    for kind in kinds:
        group, component = wanted[kind]
        owners = sorted({c.distribution for c in cat.find(group, component)})
        if owners:
            raise ScaffoldError(f"NAME '{names.family}': {kind} '{component}' is already provided by "
                                f"{', '.join(owners)}; choose another NAME")


def _entry_points(names: PluginNames, kinds: tuple[str, ...]) -> str:
    """One entry-point table per kind; the group and the module share a name (srode.archs -> archs.py)."""
    components = {"arch": names.arch, "model": names.model, "loss": names.loss}
    blocks = []
    for kind in kinds:
        group, component = KIND_GROUPS[kind], components[kind]
        value = f"{names.package}.{group}:{component}"
        blocks.append(f'\n[project.entry-points."srode.{group}"]\n{component} = "{value}"\n')
    return "".join(blocks)


def _test_imports(names: PluginNames, kinds: tuple[str, ...]) -> str:
    checks = ["check_arch", *(["check_loss"] if "loss" in kinds else []), "check_model"]
    third_party = ["import pytest", *(["import torch"] if {"loss", "model"} & set(kinds) else []),
                   f"from srode_plugins.testing import {', '.join(checks)}"]
    first_party = [f"from {names.package}.archs import {names.arch}"]
    if "loss" in kinds:
        first_party.append(f"from {names.package}.losses import {names.loss}")
    if "model" in kinds:
        first_party.append(f"from {names.package}.models import lr_consistency_loss")
    return "\n".join(["from pathlib import Path", "", *third_party, "", *first_party])


def _extra_tests(names: PluginNames, kinds: tuple[str, ...]) -> str:
    tests = []
    if "loss" in kinds:
        loss_snake = _snake(names.loss)
        tests.append(f'''

def test_{loss_snake}_passes_the_loss_conformance_checks() -> None:
    check_loss("{names.loss}", {{"edge_weight": 0.5}})


def test_{loss_snake}_of_a_constant_offset_is_the_offset_times_the_loss_weight() -> None:
    target = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    loss = {names.loss}(loss_weight=2.0, edge_weight=0.5)
    # A constant offset leaves every finite difference unchanged: only the L1 term remains.
    assert float(loss(target + 0.25, target)) == pytest.approx(2.0 * 0.25, rel=1e-5)
''')
    if "model" in kinds:
        tests.append('''

def test_lr_consistency_loss_of_two_constant_images_is_their_difference() -> None:
    output = torch.full((1, 3, 16, 16), 0.75)
    lq = torch.full((1, 3, 4, 4), 0.5)
    assert float(lr_consistency_loss(output, lq)) == pytest.approx(0.25, abs=1e-5)
''')
    return "".join(tests).rstrip("\n") + "\n" if tests else ""


def _readme_parts(names: PluginNames, kinds: tuple[str, ...]) -> dict[str, str]:
    rows = {"arch": ("arch", names.arch, "archs.py", "a small residual conv SR network (x2, x3, x4, x8)"),
            "model": ("model", names.model, "models.py", "SRModel plus an LR-consistency loss term"),
            "loss": ("loss", names.loss, "losses.py", "L1 plus an edge (finite-difference) term")}
    table = "\n".join(f"| {rows[k][0]} | `{rows[k][1]}` | {names.package}/{rows[k][2]} |" for k in kinds)
    files = "".join(f"- `{names.package}/{rows[k][2]}`: {rows[k][3]}\n" for k in kinds)
    groups = ", ".join(f"`srode.{KIND_GROUPS[k]}`" for k in kinds)
    summary = "; ".join(f"{rows[k][1]}, {rows[k][3]}" for k in kinds)
    return {"component_table": table, "files_list": files, "entry_point_groups": groups, "summary": summary}


def _option_parts(names: PluginNames, kinds: tuple[str, ...]) -> dict[str, str]:
    if "loss" in kinds:
        pixel = f"    type: {names.loss}\n    loss_weight: 1.0\n    edge_weight: 0.5\n"
    else:
        pixel = "    type: L1Loss\n    loss_weight: 1.0\n    reduction: mean\n"
    consistency = "  consistency_weight: 0.1\n" if "model" in kinds else ""
    return {"model_type": names.model if "model" in kinds else "SRModel", "pixel_loss": pixel,
            "consistency_line": consistency}


def render_plugin(names: PluginNames, kinds: tuple[str, ...]) -> dict[str, str]:
    """{relative path: file text} of the plugin distribution for `names` with the given kinds."""
    values = {
        "dist": names.dist, "package": names.package, "arch": names.arch, "model": names.model, "loss": names.loss,
        "options_name": names.options_name, "option_stem": names.option_stem, "api_version": API_VERSION,
        "core_requirement": core_requirement(), "arch_snake": _snake(names.arch),
        "component_entry_points": _entry_points(names, kinds), "imports": _test_imports(names, kinds),
        "extra_tests": _extra_tests(names, kinds),
        **_readme_parts(names, kinds), **_option_parts(names, kinds),
    }
    package_files = ["__init__.py", "selfcheck.py", *(f"{KIND_GROUPS[k]}.py" for k in kinds)]
    sources = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"{names.package}/options/{names.option_stem}.yml": "package/options/demo.yml.tmpl",
        f"tests/test_{names.options_name}_conformance.py": "tests/test_conformance.py.tmpl",
        **{f"{names.package}/{file}": f"package/{file}.tmpl" for file in package_files},
    }
    return {target: Template((TEMPLATES / source).read_text(encoding="utf-8")).substitute(values)
            for target, source in sources.items()}


def generate_plugin(name: str, dest: str | Path = ".", kinds: tuple[str, ...] = ("arch",)) -> Path:
    """Write the plugin distribution for family `name` into `<dest>/srode-plugin-<name>`; returns that folder.

    Raises ScaffoldError when the name is invalid or taken, or the folder exists.
    """
    names = PluginNames.from_family(name)
    kinds = parse_kinds(",".join(kinds))
    target = Path(dest).expanduser().resolve() / names.dist
    if target.exists():
        raise ScaffoldError(f"'{target}' exists; choose another --dest or NAME, or delete it first")
    _check_free(names, kinds)
    for relative, text in render_plugin(names, kinds).items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target


def add_new_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `basicsr plugins new`."""
    parser.add_argument("name", metavar="NAME",
                        help="family name, e.g. 'fast-sr': makes distribution srode-plugin-fast-sr, package "
                             "srode_fast_sr, arch FastSrSR")
    parser.add_argument("--dest", default=".", metavar="DIR", help="folder to create the plugin in (default: .)")
    parser.add_argument("--kind", default="arch", metavar="KINDS",
                        help=f"comma-separated components to generate, from {','.join(KINDS)} (default: arch; "
                             f"the arch is always generated)")


def run_new(args: argparse.Namespace) -> int:
    """`basicsr plugins new`: generate the plugin and print what to do next."""
    target = generate_plugin(args.name, args.dest, parse_kinds(args.kind))
    names = PluginNames.from_family(args.name)
    shown = Path(args.dest) / names.dist
    option = shown / names.package / "options" / f"{names.option_stem}.yml"
    print(f"Created {names.dist} in {target}:")
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        print(f"    {path.relative_to(target)}")
    print(f"\nNext:\n"
          f"    pip install -e {shown}        (offline: add --no-deps --no-build-isolation)\n"
          f"    basicsr plugins list\n"
          f"    basicsr train -opt {option} --set train.total_iter=3\n"
          f"    python -m pytest {shown / 'tests'}")
    return 0
