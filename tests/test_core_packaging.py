"""The core and every first-party plugin build proper wheels: metadata, version range, entry points, options."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").is_file())


def build_wheel(source: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, text=True, timeout=600)
    return max(out.glob("*.whl"), key=lambda p: p.stat().st_mtime)


def wheel_metadata(wheel: Path) -> tuple[dict[str, list[str]], str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(meta_name).decode())
        eps_name = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        entry_points = archive.read(eps_name).decode() if eps_name else ""
    fields = {key: meta.get_all(key) or [] for key in ("Name", "Version", "Requires-Python", "Requires-Dist")}
    return fields, entry_points, names


@pytest.mark.slow
def test_core_wheel_declares_python_range_console_script_and_basicsr(tmp_path: Path) -> None:
    fields, entry_points, names = wheel_metadata(build_wheel(REPO, tmp_path))
    assert fields["Name"] == ["srode-plugins"]
    assert sorted(fields["Requires-Python"][0].split(",")) == ["<3.13", ">=3.10"]
    assert any(req.startswith("basicsr==1.4.2") for req in fields["Requires-Dist"])
    assert "basicsr = srode_plugins.cli:main" in entry_points
    assert "srode_plugins/compat.py" in names and not any(n.startswith("tests/") for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_plugin_wheel_depends_on_a_core_range_and_ships_its_option_files(plugin: Path, tmp_path: Path) -> None:
    fields, entry_points, names = wheel_metadata(build_wheel(plugin, tmp_path))
    assert fields["Name"] == [plugin.name]
    core_requirements = [r for r in fields["Requires-Dist"] if r.replace(" ", "").startswith("srode-plugins")]
    assert core_requirements and "<" in core_requirements[0] and ">=" in core_requirements[0]
    assert "[srode.api]" in entry_points
    shipped = [n for n in names if n.endswith(".yml")]
    sources = list(plugin.glob("srode_*/options/**/*.yml"))
    assert len(shipped) == len(sources) > 0
