"""`basicsr plugins new` generates a plugin that installs, lists, trains and passes its own tests without edits."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from srode_plugins import API_VERSION
from srode_plugins.options import load_yaml
from srode_plugins.scaffold import (
    PluginNames,
    ScaffoldError,
    add_new_arguments,
    core_requirement,
    generate_plugin,
    parse_kinds,
    run_new,
)


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_names_derive_from_the_family_name() -> None:
    names = PluginNames.from_family("fast-sr")
    assert (names.dist, names.package, names.options_name) == ("srode-plugin-fast-sr", "srode_fast_sr", "fast_sr")
    assert (names.arch, names.model, names.loss) == ("FastSrSR", "FastSrModel", "FastSrLoss")
    assert PluginNames.from_family("srode-plugin-fast-sr") == names


@pytest.mark.parametrize("bad", ["FastSR", "9lives", "fast--sr", "fast sr", "-x", "fast_"])
def test_an_unusable_name_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ScaffoldError, match=f"NAME '{bad}'"):
        PluginNames.from_family(bad)


def test_an_uppercase_name_gets_a_lowercase_suggestion() -> None:
    with pytest.raises(ScaffoldError, match="e.g. 'fastsr'"):
        PluginNames.from_family("FastSR")


def test_kinds_always_include_the_arch_and_unknown_kinds_name_the_option() -> None:
    assert parse_kinds("loss,model") == ("arch", "model", "loss")
    assert parse_kinds("") == ("arch",)
    with pytest.raises(ScaffoldError, match="--kind: unknown kind.*sampler.*choose from arch,model,loss"):
        parse_kinds("arch,sampler")


def test_the_core_requirement_allows_compatible_core_releases_only() -> None:
    assert core_requirement("0.1.0") == "srode-plugins>=0.1,<0.2"
    assert core_requirement("1.2.3") == "srode-plugins>=1.2,<2"


@pytest.mark.parametrize("kinds", [("arch",), ("arch", "model", "loss")])
def test_the_generated_pyproject_declares_entry_points_for_each_kind(tmp_path: Path, kinds: tuple[str, ...]) -> None:
    toml = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    plugin = generate_plugin("probe-gen", tmp_path, kinds)
    project = toml.loads((plugin / "pyproject.toml").read_text())["project"]
    entry_points = project["entry-points"]
    assert project["name"] == "srode-plugin-probe-gen"
    assert core_requirement() in project["dependencies"]
    assert entry_points["srode.api"] == {API_VERSION: "srode_probe_gen"}
    assert entry_points["srode.archs"] == {"ProbeGenSR": "srode_probe_gen.archs:ProbeGenSR"}
    assert entry_points["srode.options"] == {"probe_gen": "srode_probe_gen.options"}
    assert entry_points["srode.plugin"] == {"selfcheck": "srode_probe_gen.selfcheck:run"}
    assert ("srode.models" in entry_points) == ("model" in kinds)
    assert ("srode.losses" in entry_points) == ("loss" in kinds)
    for group in ("srode.archs", "srode.models", "srode.losses"):
        for value in entry_points.get(group, {}).values():
            module, _, obj = value.partition(":")
            assert f"class {obj}(" in (plugin / (module.replace(".", "/") + ".py")).read_text()


@pytest.mark.parametrize("kinds", [("arch",), ("arch", "model", "loss")])
def test_the_generated_option_file_trains_the_example_arch_on_demo_data(tmp_path: Path,
                                                                        kinds: tuple[str, ...]) -> None:
    plugin = generate_plugin("probe-opt", tmp_path, kinds)
    opt = load_yaml(plugin / "srode_probe_opt" / "options" / "ProbeOptSR_x4_demo.yml")
    assert opt["network_g"]["type"] == "ProbeOptSR" and opt["network_g"]["upscale"] == opt["scale"] == 4
    assert opt["model_type"] == ("ProbeOptModel" if "model" in kinds else "SRModel")
    assert opt["train"]["pixel_opt"]["type"] == ("ProbeOptLoss" if "loss" in kinds else "L1Loss")
    roots = [d[k] for d in opt["datasets"].values() for k in ("dataroot_gt", "dataroot_lq")]
    assert roots and all(r.startswith("demo://") for r in roots)


def test_every_generated_python_file_compiles_and_is_ruff_clean(tmp_path: Path) -> None:
    plugin = generate_plugin("probe-lint", tmp_path, ("arch", "model", "loss"))
    sources = sorted(plugin.rglob("*.py"))
    assert {p.name for p in sources} == {"__init__.py", "archs.py", "models.py", "losses.py", "selfcheck.py",
                                         "test_probe_lint_conformance.py"}
    for source in sources:
        compile(source.read_text(), str(source), "exec")
    # ruff of this interpreter's environment (the venv's bin/ need not be on PATH), else any on PATH
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed")
    result = subprocess.run([ruff, "check", "--no-cache", str(plugin)], capture_output=True, text=True, cwd=plugin)
    assert result.returncode == 0, result.stdout


def test_an_existing_destination_or_a_taken_package_is_refused(tmp_path: Path) -> None:
    generate_plugin("probe-twice", tmp_path)
    with pytest.raises(ScaffoldError, match="srode-plugin-probe-twice' exists; choose another --dest or NAME"):
        generate_plugin("probe-twice", tmp_path)
    with pytest.raises(ScaffoldError, match="package 'srode_plugins' is already importable"):
        generate_plugin("plugins", tmp_path)


def test_run_new_writes_the_plugin_and_prints_the_next_commands(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_new_arguments(parser)
    assert run_new(parser.parse_args(["probe-cli", "--dest", str(tmp_path), "--kind", "loss"])) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "srode-plugin-probe-cli" / "srode_probe_cli" / "losses.py").is_file()
    assert "pip install -e" in printed
    assert "basicsr train -opt" in printed and "ProbeCliSR_x4_demo.yml --set train.total_iter=3" in printed


@pytest.mark.slow
def test_a_generated_plugin_installs_lists_passes_its_tests_trains_and_uninstalls(tmp_path: Path) -> None:
    family = f"probe{uuid.uuid4().hex[:8]}"  # unique: the shared environment may hold another run's probe
    plugin = generate_plugin(family, tmp_path / "src", ("arch", "model", "loss"))
    names = PluginNames.from_family(family)
    pip = ["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    installed = _run([*pip, "-e", str(plugin)], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    try:
        listing = _run(["-m", "srode_plugins", "plugins", "list"], cwd=tmp_path)
        assert f"{names.dist} 0.1.0, core API {API_VERSION}  [ok]" in listing.stdout, listing.stdout
        assert names.arch in listing.stdout and names.model in listing.stdout and names.loss in listing.stdout

        own_tests = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=plugin)
        assert own_tests.returncode == 0, own_tests.stdout[-3000:]
        assert "6 passed" in own_tests.stdout

        option = plugin / names.package / "options" / f"{names.option_stem}.yml"
        trained = _run(["-m", "srode_plugins", "train", "-opt", str(option), "--set", "train.total_iter=3"],
                       cwd=tmp_path)
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert (tmp_path / "experiments" / names.option_stem / "models" / "net_g_latest.pth").is_file()

        wheel = _run(["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
                      "-w", str(tmp_path / "dist"), str(plugin)], cwd=tmp_path)
        assert wheel.returncode == 0, wheel.stderr
        with zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))) as archive:
            shipped = set(archive.namelist())
        assert f"{names.package}/options/{names.option_stem}.yml" in shipped
        assert f"{names.package}/archs.py" in shipped
        assert not any(name.startswith("tests/") for name in shipped)
    finally:
        removed = _run(["-m", "pip", "uninstall", "-y", "--quiet", names.dist], cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert names.dist not in _run(["-m", "srode_plugins", "plugins", "list"], cwd=tmp_path).stdout
