"""The folder tree is the architecture: plugin packages import the core only through `srode_plugins.api`, and no
plugin imports another plugin.

One exception: `srode_plugins.weights` (the `WeightsFile` record), which a plugin's weights table imports so that
`basicsr weights list` can read it without importing torch (the api module does).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
ALLOWED_CORE_MODULES = {"srode_plugins.api", "srode_plugins.weights"}
PLUGIN_PACKAGES = {package.name: dist.name for dist in PLUGINS.iterdir() if dist.is_dir()
                   for package in dist.glob("srode_*") if (package / "__init__.py").is_file()}


def imported_modules(source: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in a file; `from a import b` counts as `a.b` too (b may be a module)."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
            found.append((node.lineno, node.module))
    return found


def core_import_allowed(module: str) -> bool:
    if module == "srode_plugins":
        return True  # `from srode_plugins import api` is listed as srode_plugins.api as well
    return any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED_CORE_MODULES)


def test_there_are_plugin_packages_to_check() -> None:
    assert set(PLUGIN_PACKAGES) >= {"srode_baselines", "srode_node", "srode_rk4gan", "srode_resshift"}


@pytest.mark.parametrize("package", sorted(PLUGIN_PACKAGES))
def test_a_plugin_package_imports_the_core_only_through_its_api(package: str) -> None:
    root = PLUGINS / PLUGIN_PACKAGES[package] / package
    offenders = [f"{path.relative_to(PLUGINS)}:{line}: {module}" for path in sorted(root.rglob("*.py"))
                 for line, module in imported_modules(path)
                 if module.startswith("srode_plugins") and not core_import_allowed(module)]
    assert offenders == [], "import these through srode_plugins.api instead:\n" + "\n".join(offenders)


@pytest.mark.parametrize("package", sorted(PLUGIN_PACKAGES))
def test_a_plugin_never_imports_another_plugin(package: str) -> None:
    dist_root = PLUGINS / PLUGIN_PACKAGES[package]
    others = set(PLUGIN_PACKAGES) - {package}
    offenders = [f"{path.relative_to(PLUGINS)}:{line}: {module}" for path in sorted(dist_root.rglob("*.py"))
                 for line, module in imported_modules(path) if module.split(".")[0] in others]
    assert offenders == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from srode_plugins.engine.train import train\nfrom srode_plugins import api\n")
    modules = [m for _, m in imported_modules(bad)]
    assert [m for m in modules if m.startswith("srode_plugins") and not core_import_allowed(m)] == [
        "srode_plugins.engine.train.train", "srode_plugins.engine.train"]
