"""Discovery and lazy loading through real distribution metadata.

Each test writes throwaway plugin distributions (`*.dist-info` with METADATA + entry_points.txt, and a tiny
package) into a temporary folder on sys.path, exactly what pip leaves behind. In the `plugins` environment
every sys.path entry that holds installed distributions is hidden, so only the throwaway plugins (and
BasicSR's own registries) are visible; `plugins_beside_installed` keeps the real environment too.
"""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from srode_plugins import cli, components, discovery
from srode_plugins.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError

REPO_ROOT = Path(__file__).resolve().parents[1]

ARCH_MODULE = """
class TinyArch:
    def __init__(self, scale=4):
        self.scale = scale
"""
SAMPLER_MODULE = """
class HalfSampler:
    def __init__(self, steps=10):
        self.steps = steps


class FullSampler:
    pass
"""


@dataclass
class PluginSite:
    """A folder on sys.path that throwaway plugin distributions are written into."""

    root: Path
    packages: list[str] = field(default_factory=list)

    def add(self, distribution: str, package: str, entry_points: dict[str, dict[str, str]], *,
            api: str | None = "1.0", modules: dict[str, str] | None = None, version: str = "0.1.0",
            root: Path | None = None) -> None:
        """Write `<distribution>-<version>.dist-info` and the package `package` with `modules` (name -> source)."""
        root = root or self.root
        dist_info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        groups = {**({"srode.api": {api: package}} if api else {}), **entry_points}
        (dist_info / "entry_points.txt").write_text("".join(
            f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items()) + "\n"
            for group, points in groups.items()))
        if modules is not None:
            (root / package).mkdir()
            (root / package / "__init__.py").write_text("")
            for name, source in modules.items():
                (root / package / f"{name}.py").write_text(textwrap.dedent(source))
            self.packages.append(package)
        importlib.invalidate_caches()
        discovery.catalog.cache_clear()


def holds_distributions(entry: str) -> bool:
    return any(True for _ in metadata.distributions(path=[entry]))


@dataclass
class LoadedState:
    """What loading components changes process-wide, to undo it after a test."""

    registries: dict[str, set[str]]
    loaded: dict[tuple[str, str], Any]
    srode_registry: dict[tuple[str, str], Any]
    broken: dict[str, str]

    @classmethod
    def take(cls) -> LoadedState:
        return cls({kind: set(components.basicsr_registry(kind).keys()) for kind in discovery.BASICSR_KINDS},
                   dict(components._LOADED), dict(components._SRODE_REGISTRY), dict(components.BROKEN))

    def restore(self) -> None:
        for kind, names in self.registries.items():
            registry = components.basicsr_registry(kind)
            for name in set(registry.keys()) - names:
                del registry._obj_map[name]
        for live, saved in ((components._LOADED, self.loaded), (components._SRODE_REGISTRY, self.srode_registry),
                            (components.BROKEN, self.broken)):
            live.clear()
            live.update(saved)


def make_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, hide_installed: bool) -> Iterator[PluginSite]:
    site = PluginSite(tmp_path / "site")
    site.root.mkdir()
    kept = [p for p in sys.path if not (hide_installed and holds_distributions(p))]
    monkeypatch.setattr(sys, "path", [str(site.root), *kept])
    importlib.invalidate_caches()
    discovery.catalog.cache_clear()
    state = LoadedState.take()
    yield site
    state.restore()
    for module in [m for m in sys.modules if m.split(".")[0] in site.packages]:
        del sys.modules[module]
    discovery.catalog.cache_clear()


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginSite]:
    """An environment whose only srode plugins are the ones the test writes."""
    yield from make_site(tmp_path, monkeypatch, hide_installed=True)


@pytest.fixture
def plugins_beside_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginSite]:
    yield from make_site(tmp_path, monkeypatch, hide_installed=False)


def imported(package: str) -> list[str]:
    return sorted(m for m in sys.modules if m.split(".")[0] == package)


def add_tiny_plugin(plugins: PluginSite) -> None:
    plugins.add("srode-plugin-tiny", "fake_tiny",
                {"srode.archs": {"TinyArch": "fake_tiny.archs:TinyArch"},
                 "srode.samplers": {"HalfSampler": "fake_tiny.samplers:HalfSampler",
                                    "FullSampler": "fake_tiny.samplers:FullSampler"}},
                modules={"archs": ARCH_MODULE, "samplers": SAMPLER_MODULE})


# ---------------------------------------------------------------- listing


def test_components_are_listed_by_kind_without_importing_the_plugin(plugins: PluginSite) -> None:
    add_tiny_plugin(plugins)

    catalog = discovery.catalog()

    info = catalog.plugins["srode-plugin-tiny"]
    assert (info.distribution, info.version, info.api_required, info.status) == ("srode-plugin-tiny", "0.1.0", "1.0",
                                                                                   "ok")
    assert catalog.names("archs") == ["TinyArch"]
    assert catalog.names("samplers") == ["FullSampler", "HalfSampler"]
    assert catalog.kinds() == ["archs", "datasets", "losses", "metrics", "models", "samplers"]
    assert components.list_components("samplers") == ["FullSampler", "HalfSampler"]
    assert {"TinyArch", "EDSR", "RRDBNet"} <= set(components.list_components("archs"))
    assert imported("fake_tiny") == []


def test_plugins_list_prints_each_plugin_with_its_components_grouped_by_kind(
        plugins: PluginSite, capsys: pytest.CaptureFixture[str]) -> None:
    add_tiny_plugin(plugins)

    assert cli.main(["plugins", "list"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out == ["srode-plugin-tiny 0.1.0, core API 1.0  [ok]",
                   "    archs          TinyArch",
                   "    samplers       FullSampler, HalfSampler"]
    assert imported("fake_tiny") == []


def test_a_plugin_is_listed_beside_the_installed_distributions(plugins_beside_installed: PluginSite) -> None:
    add_tiny_plugin(plugins_beside_installed)
    catalog = discovery.catalog()
    assert "srode-plugin-tiny" in catalog.plugins
    assert "srode-plugins" in catalog.plugins  # the core's own entry points (its LR schedulers)
    assert "ValidationLRDecay" in catalog.names("lr_schedulers")
    assert imported("fake_tiny") == []


def test_a_distribution_found_twice_on_sys_path_counts_once(plugins: PluginSite, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    add_tiny_plugin(plugins)
    stale = tmp_path / "stale"
    plugins.add("srode-plugin-tiny", "fake_tiny", {"srode.archs": {"TinyArch": "fake_tiny.archs:TinyArch"}},
                version="0.0.1", root=stale)
    monkeypatch.setattr(sys, "path", [*sys.path, str(stale)])
    discovery.catalog.cache_clear()

    catalog = discovery.catalog()

    assert catalog.plugins["srode-plugin-tiny"].version == "0.1.0"
    assert catalog.conflicts == {}
    assert catalog.plugins["srode-plugin-tiny"].ok


# ---------------------------------------------------------------- loading


def test_loading_registers_plugin_archs_where_stock_basicsr_builders_find_them(plugins: PluginSite) -> None:
    add_tiny_plugin(plugins)
    from basicsr.archs import build_network
    from basicsr.utils.registry import ARCH_REGISTRY

    arch = components.load_component("archs", "TinyArch")

    assert imported("fake_tiny") == ["fake_tiny", "fake_tiny.archs"]  # only the module that was named
    assert ARCH_REGISTRY.get("TinyArch") is arch
    network = build_network({"type": "TinyArch", "scale": 3})
    assert type(network) is arch and network.scale == 3


def test_plugin_kinds_build_from_options_in_srodes_own_registry(plugins: PluginSite) -> None:
    add_tiny_plugin(plugins)

    sampler = components.build_component("samplers", {"type": "HalfSampler", "steps": 4})

    assert type(sampler).__name__ == "HalfSampler" and sampler.steps == 4
    assert components._SRODE_REGISTRY[("samplers", "HalfSampler")] is type(sampler)
    with pytest.raises(UnknownComponentError, match="cannot build HalfSampler: .*'stride'"):
        components.build_component("samplers", {"type": "HalfSampler", "stride": 2}, key="sampler")


# ---------------------------------------------------------------- conflicts


def test_two_distributions_offering_one_name_is_an_error_naming_both(plugins: PluginSite) -> None:
    for distribution, package in (("srode-plugin-alpha", "fake_alpha"), ("srode-plugin-beta", "fake_beta")):
        plugins.add(distribution, package, {"srode.archs": {"SharedNet": f"{package}.archs:SharedNet"}},
                    modules={"archs": "class SharedNet:\n    pass\n"})

    with pytest.raises(DuplicateComponentError) as error:
        components.load_component("archs", "SharedNet")

    assert "arch 'SharedNet' is provided by several distributions: srode-plugin-alpha, srode-plugin-beta" in str(
        error.value)
    assert "pip uninstall" in str(error.value)
    assert imported("fake_alpha") == [] and imported("fake_beta") == []
    statuses = {name: info.status for name, info in discovery.catalog().plugins.items()}
    assert statuses == {"srode-plugin-alpha": "broken: arch 'SharedNet' also provided by srode-plugin-beta",
                        "srode-plugin-beta": "broken: arch 'SharedNet' also provided by srode-plugin-alpha"}


def test_a_plugin_reusing_a_basicsr_name_is_refused(plugins: PluginSite) -> None:
    plugins.add("srode-plugin-copycat", "fake_copycat", {"srode.archs": {"EDSR": "fake_copycat.archs:EDSR"}},
                modules={"archs": "class EDSR:\n    pass\n"})
    with pytest.raises(DuplicateComponentError, match="'EDSR' is provided both by BasicSR itself and by "
                                                      "srode-plugin-copycat"):
        components.load_component("archs", "EDSR")
    assert imported("fake_copycat") == []


# ---------------------------------------------------------------- broken plugins


def add_broken_and_good_plugins(plugins: PluginSite) -> None:
    plugins.add("srode-plugin-broken", "fake_broken", {"srode.archs": {"BrokenNet": "fake_broken.archs:BrokenNet"}},
                modules={"archs": "raise RuntimeError('boom: a dependency is missing')\n"})
    plugins.add("srode-plugin-good", "fake_good", {"srode.archs": {"GoodNet": "fake_good.archs:GoodNet"}},
                modules={"archs": "class GoodNet:\n    pass\n"})


def test_a_plugin_that_fails_to_import_breaks_only_itself(plugins: PluginSite) -> None:
    add_broken_and_good_plugins(plugins)

    with pytest.raises(PluginLoadError) as error:
        components.load_component("archs", "BrokenNet")
    good = components.load_component("archs", "GoodNet")

    assert str(error.value) == ("plugin srode-plugin-broken is broken: importing fake_broken.archs:BrokenNet failed: "
                                "RuntimeError: boom: a dependency is missing")
    assert good.__name__ == "GoodNet"
    with pytest.raises(PluginLoadError, match="is broken: importing fake_broken.archs:BrokenNet failed"):
        components.load_component("archs", "BrokenNet")  # remembered, not retried


def test_plugins_list_deep_shows_why_a_plugin_is_broken(plugins: PluginSite,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    add_broken_and_good_plugins(plugins)

    assert cli.main(["plugins", "list"]) == 0  # names only: nothing imported, nothing known to be wrong yet
    assert imported("fake_broken") == []
    capsys.readouterr()
    assert cli.main(["plugins", "list", "--deep"]) == 1

    out = capsys.readouterr().out
    assert ("srode-plugin-broken 0.1.0, core API 1.0  [broken: importing fake_broken.archs:BrokenNet failed: "
            "RuntimeError: boom: a dependency is missing]") in out
    assert "srode-plugin-good 0.1.0, core API 1.0  [ok]" in out


def test_a_plugin_whose_package_is_gone_is_broken_without_importing(plugins: PluginSite) -> None:
    plugins.add("srode-plugin-gone", "fake_gone", {"srode.archs": {"GoneNet": "fake_gone.archs:GoneNet"}})

    info = discovery.catalog().plugins["srode-plugin-gone"]

    assert info.status == "broken: package 'fake_gone' is not importable (reinstall srode-plugin-gone)"
    with pytest.raises(PluginLoadError, match="plugin srode-plugin-gone cannot be used: broken: package 'fake_gone'"):
        components.load_component("archs", "GoneNet")


# ---------------------------------------------------------------- core API versions


@pytest.mark.parametrize("required", ["2.0", "1.9", "0.9"])
def test_a_plugin_needing_an_incompatible_core_api_is_broken_and_refused(plugins: PluginSite, required: str) -> None:
    plugins.add("srode-plugin-future", "fake_future", {"srode.archs": {"FutureNet": "fake_future.archs:FutureNet"}},
                api=required, modules={"archs": "class FutureNet:\n    pass\n"})

    info = discovery.catalog().plugins["srode-plugin-future"]

    expected = (f"needs srode core API {required}, this core provides {discovery.API_VERSION}: install a matching "
                f"version of srode-plugin-future or of srode-plugins")
    assert info.status == f"broken: {expected}"
    with pytest.raises(PluginLoadError) as error:
        components.load_component("archs", "FutureNet")
    assert expected in str(error.value)
    assert imported("fake_future") == []


def test_a_plugin_declaring_no_core_api_is_broken(plugins: PluginSite) -> None:
    plugins.add("srode-plugin-vague", "fake_vague", {"srode.archs": {"VagueNet": "fake_vague.archs:VagueNet"}},
                api=None, modules={"archs": "class VagueNet:\n    pass\n"})
    assert discovery.catalog().plugins["srode-plugin-vague"].status == (
        "broken: declares no core API version (entry point group 'srode.api'); core has 1.0")


@pytest.mark.parametrize(("required", "provided", "compatible"), [
    ("1.0", "1.0", True), ("1.0", "1.3", True), ("1.3.2", "1.3", True), ("1.2", "1.1", False),
    ("2.0", "1.0", False), ("1.0", "2.0", False), ("one", "1.0", False), ("1", "1.0", False),
])
def test_api_compatibility_is_same_major_and_minor_not_newer(required: str, provided: str, compatible: bool) -> None:
    assert discovery.api_compatible(required, provided) is compatible


# ---------------------------------------------------------------- unknown names


def test_unknown_type_lists_known_names_and_the_first_party_install_line(plugins: PluginSite) -> None:
    add_tiny_plugin(plugins)
    assert discovery.FIRST_PARTY_COMPONENTS["NODESRNet"] == "srode-plugin-node"

    with pytest.raises(UnknownComponentError) as error:
        components.load_component("archs", "NODESRNet", file="opt.yml", key="network_g.type")

    message = str(error.value)
    assert message.startswith("opt.yml: option 'network_g.type': unknown arch 'NODESRNet'.")
    assert "It is provided by a first-party plugin: pip install srode-plugin-node" in message
    known = re.search(r"Known archs: (.*)\.$", message).group(1).split(", ")
    assert {"TinyArch", "EDSR", "RRDBNet"} <= set(known) and known == sorted(known)
    assert (error.value.file, error.value.key) == ("opt.yml", "network_g.type")


def test_unknown_type_suggests_the_nearest_names(plugins: PluginSite) -> None:
    add_tiny_plugin(plugins)
    with pytest.raises(UnknownComponentError, match=r"unknown sampler 'HalfSamplr'\. Did you mean: HalfSampler"):
        components.load_component("samplers", "HalfSamplr")
    with pytest.raises(UnknownComponentError) as error:
        components.load_component("archs", "EDSRR")
    assert "Did you mean: EDSR" in str(error.value)
    assert "pip install" not in str(error.value)


def test_a_name_installed_as_another_kind_says_so(plugins: PluginSite) -> None:
    add_tiny_plugin(plugins)
    with pytest.raises(UnknownComponentError, match="'TinyArch' is installed, but among the archs, not the models"):
        components.load_component("models", "TinyArch", key="model_type")


def test_torch_lr_scheduler_names_are_known_lr_schedulers() -> None:
    assert components.load_component("lr_schedulers", "StepLR") == "StepLR"
    assert {"StepLR", "OneCycleLR", "MultiStepRestartLR"} <= set(components.list_components("lr_schedulers"))
    with pytest.raises(UnknownComponentError, match="Did you mean: StepLR"):
        components.load_component("lr_schedulers", "StepLRR", key="train.scheduler.type")


def first_party_entry_points() -> dict[str, str]:
    """{component name: distribution} from the first-party plugins' pyproject.toml in this repository."""
    tomllib = pytest.importorskip("tomllib")
    found: dict[str, str] = {}
    for pyproject in sorted(REPO_ROOT.glob("plugins/srode-plugin-*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        for group, points in project.get("entry-points", {}).items():
            kind = group.removeprefix(discovery.GROUP_PREFIX)
            if group.startswith(discovery.GROUP_PREFIX) and kind not in discovery.META_GROUPS:
                found.update(dict.fromkeys(points, project["name"]))
    if not found:
        pytest.skip("the first-party plugins' sources are not beside this checkout")
    return found


def test_first_party_install_hints_match_the_plugins_entry_points() -> None:
    provided = first_party_entry_points()
    stale = {name: dist for name, dist in discovery.FIRST_PARTY_COMPONENTS.items() if provided.get(name) != dist}
    assert stale == {}


# ---------------------------------------------------------------- BasicSR's `_basicsr` suffix

SUFFIXED = [(kind, name) for kind, names in discovery.BASICSR_SUFFIXED.items() for name in names]


def test_the_suffixed_table_matches_basicsrs_registries() -> None:
    registered = {(kind, key.removesuffix("_basicsr")) for kind in discovery.BASICSR_KINDS
                  for key in components.basicsr_registry(kind).keys() if key.endswith("_basicsr")}
    assert registered == set(SUFFIXED)


@pytest.mark.parametrize(("kind", "name"), SUFFIXED)
def test_a_plain_name_finds_the_component_basicsr_registered_with_its_suffix(kind: str, name: str) -> None:
    expected = components.basicsr_registry(kind)._obj_map[f"{name}_basicsr"]
    assert components.load_component(kind, name) is expected
    assert components.load_component(kind, f"{name}_basicsr") is expected
    assert name in components.list_components(kind)
    assert f"{name}_basicsr" not in components.list_components(kind)


def test_the_option_check_accepts_upstreams_real_esrgan_option_names(tmp_path: Path) -> None:
    from srode_plugins.engine import setup
    from srode_plugins.options import OptionFile

    opt = {"model_type": "RealESRNetModel", "network_g": {"type": "RRDBNet"},
           "network_d": {"type": "UNetDiscriminatorSN"},
           "datasets": {"train": {"type": "RealESRGANDataset"}, "val": {"type": "RealESRGANPairedDataset"}}}
    setup.resolve_components(OptionFile(opt=opt, file=tmp_path / "realesrnet.yml"))


def test_unknown_type_suggests_the_plain_name_of_a_suffixed_component() -> None:
    with pytest.raises(UnknownComponentError) as error:
        components.load_component("models", "RealESRNetModl", file="x.yml", key="model_type")
    message = str(error.value)
    assert "Did you mean: RealESRNetModel" in message
    assert "RealESRNetModel_basicsr" not in message


def test_a_plugin_offering_a_suffixed_name_plainly_wins_lookups_and_is_listed_as_doing_so(
        plugins: PluginSite, capsys: pytest.CaptureFixture[str]) -> None:
    from basicsr.utils.registry import ARCH_REGISTRY

    plugins.add("srode-plugin-compact", "fake_compact",
                {"srode.archs": {"SRVGGNetCompact": "fake_compact.archs:SRVGGNetCompact"}},
                modules={"archs": "class SRVGGNetCompact:\n    pass\n"})

    assert cli.main(["plugins", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "srode-plugin-compact 0.1.0, core API 1.0  [ok; arch 'SRVGGNetCompact' replaces BasicSR's "
        "SRVGGNetCompact_basicsr wherever an option file writes 'SRVGGNetCompact']")
    arch = components.load_component("archs", "SRVGGNetCompact")
    assert arch.__module__ == "fake_compact.archs"
    assert ARCH_REGISTRY.get("SRVGGNetCompact") is arch  # upstream's own lookup agrees
    assert ARCH_REGISTRY.get("SRVGGNetCompact_basicsr") is not arch


# ---------------------------------------------------------------- plugin commands

COMMAND_MODULE = "def main(argv):\n    print('ran', __name__, argv)\n    return 0\n"


def test_core_commands_are_the_cli_subcommands() -> None:
    import argparse

    from srode_plugins.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == discovery.CORE_COMMANDS


def test_a_plugin_command_named_like_a_core_command_never_shadows_it(plugins: PluginSite,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from srode_plugins.cli import main

    plugins.add("srode-plugin-shadow", "fake_shadow", {"srode.commands": {"env": "fake_shadow.cli:main"}},
                modules={"cli": COMMAND_MODULE})
    info = discovery.catalog().plugins["srode-plugin-shadow"]
    assert "command 'env' has the name of the core's `basicsr env`" in info.status
    assert main(["env"]) == 0
    assert "ran fake_shadow" not in capsys.readouterr().out and imported("fake_shadow") == []


def test_two_plugins_with_one_command_is_an_error_naming_both(plugins: PluginSite,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from srode_plugins.cli import main

    for distribution, package in (("srode-plugin-alpha", "fake_alpha"), ("srode-plugin-beta", "fake_beta")):
        plugins.add(distribution, package, {"srode.commands": {"sweep": f"{package}.cli:main"}},
                    modules={"cli": COMMAND_MODULE})
    assert main(["sweep", "x"]) == 2
    err = capsys.readouterr().err
    assert "command 'basicsr sweep' is provided by srode-plugin-alpha and srode-plugin-beta" in err
    assert imported("fake_alpha") == [] and imported("fake_beta") == []
    statuses = {name: info.status for name, info in discovery.catalog().plugins.items()}
    assert statuses["srode-plugin-alpha"] == "broken: command 'sweep' also provided by srode-plugin-beta"


def test_a_unique_plugin_command_runs_with_its_arguments(plugins: PluginSite,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from srode_plugins.cli import main

    plugins.add("srode-plugin-solo", "fake_solo", {"srode.commands": {"solo": "fake_solo.cli:main"}},
                modules={"cli": COMMAND_MODULE})
    assert main(["solo", "--flag", "1"]) == 0
    assert "ran fake_solo.cli ['--flag', '1']" in capsys.readouterr().out
