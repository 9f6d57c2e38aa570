"""`scripts/build_wheelhouse.sh` builds twine-clean wheels from which one plugin installs by name, pulling the core in.

The fresh venv gets no srode code from this checkout. Its heavy dependencies (torch, basicsr, ...) cannot be
installed offline from wheels (pip cannot turn an installed distribution back into a wheel, and torch is
gigabytes), so they are lent read-only: a `.pth` file points at a folder of links to this venv's
site-packages entries with every srode distribution, editable hook and `.pth` file left out. pip then runs
`--no-index`: the srode wheels can only come from the wheelhouse.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def lend_installed_dependencies(target: Path) -> Path:
    """A folder of symlinks to this venv's site-packages entries, without anything of srode's."""
    site_packages = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for entry in site_packages.iterdir():
        name = entry.name.lower()
        if name.startswith(("srode", "__editable__", "_srode")) or name.endswith((".pth", ".egg-link")):
            continue
        (target / entry.name).symlink_to(entry)
    return target


def fresh_venv(path: Path, lent: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "lent_dependencies.pth").write_text(f"{lent}\n")
    return python


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.mark.slow
def test_one_plugin_installs_by_name_from_the_wheelhouse_and_pulls_the_core_in(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(["bash", str(REPO / "scripts" / "build_wheelhouse.sh"), "--out", str(dist),
                            "srode-plugin-resshift"], env={**clean_env(), "PYTHON": sys.executable},
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    assert sorted(p.name for p in dist.glob("*.whl")) == [
        "srode_plugin_resshift-0.1.0-py3-none-any.whl", "srode_plugins-0.1.0-py3-none-any.whl"]
    assert build.stdout.count("PASSED") == 2  # twine check --strict, one line per wheel

    python = fresh_venv(tmp_path / "venv", lend_installed_dependencies(tmp_path / "lent"))
    assert subprocess.run([str(python), "-c", "import srode_plugins"], cwd=tmp_path, env=clean_env(),
                          capture_output=True).returncode != 0  # nothing of srode's before the install

    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                              "--find-links", str(dist), "srode-plugin-resshift"],
                             cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    assert "Successfully installed srode-plugin-resshift-0.1.0 srode-plugins-0.1.0" in install.stdout

    listing = subprocess.run([str(tmp_path / "venv" / "bin" / "basicsr"), "plugins", "list"], cwd=tmp_path,
                             env=clean_env(), capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert "srode-plugin-resshift 0.1.0, core API 1.0  [ok]" in listing.stdout
    assert "srode-plugin-node" not in listing.stdout and "srode-plugin-rk4gan" not in listing.stdout
    where = subprocess.run([str(python), "-c", "import srode_plugins, srode_resshift; "
                            "print(srode_plugins.__file__); print(srode_resshift.__file__)"],
                           cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=True)
    assert all(line.startswith(str(tmp_path / "venv")) for line in where.stdout.split())
