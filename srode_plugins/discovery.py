"""Plugin discovery from entry-point metadata only: imports neither torch nor any plugin module.

Each component kind has its own entry-point group `srode.<kind>`; the entry name is the component's
registry name, the value `module:object`. See docs/plugin-contract.md.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata

from srode_plugins import API_VERSION

GROUP_PREFIX = "srode."
META_GROUPS = ("api", "options", "plugin", "commands")
# `basicsr <command>` names the core owns; a plugin command with one of these names is refused, never dispatched.
CORE_COMMANDS = frozenset({"train", "test", "infer", "evaluate", "export", "env", "demo", "plugins", "options",
                           "data", "weights"})
# Kinds that map onto BasicSR's own registries; any other kind lives in srode's registry.
BASICSR_KINDS = ("archs", "models", "losses", "datasets", "metrics")
CORE_DISTRIBUTION = "srode-plugins"
# What BasicSR 1.4.2 registers as `<name>_basicsr` (kept in step with its registries by
# tests/test_core_discovery.py). Its Registry.get tries the plain name first, so a plugin offering the plain
# name takes over every option file that writes it.
BASICSR_SUFFIXED: dict[str, tuple[str, ...]] = {
    "archs": ("SRVGGNetCompact", "UNetDiscriminatorSN"),
    "datasets": ("RealESRGANDataset", "RealESRGANPairedDataset"),
    "models": ("RealESRGANModel", "RealESRNetModel"),
}

# Components of the first-party plugins (kept in step with their pyproject.toml entry points by
# tests/test_core_discovery.py), for the `pip install` hint of an unknown-type error.
FIRST_PARTY_COMPONENTS: dict[str, str] = {
    "NODESRNet": "srode-plugin-node",
    "NODESRModel": "srode-plugin-node",
    "RK4DualAttnRDN": "srode-plugin-rk4gan",
    "SRGANDiscriminator": "srode-plugin-rk4gan",
    "DualAttentionRCAN": "srode-plugin-rk4gan",
    "LocalVGGPerceptualLoss": "srode-plugin-rk4gan",
    "UNetModelSwin": "srode-plugin-resshift",
    "ContinuousResShiftModel": "srode-plugin-resshift",
    "VQAutoencoderF4": "srode-plugin-resshift",
    "PixelSpaceAutoencoder": "srode-plugin-resshift",
    "DiscretePowerSchedule": "srode-plugin-resshift",
    "ContinuousPowerSchedule": "srode-plugin-resshift",
    "ExponentialSchedule": "srode-plugin-resshift",
    "DiscreteResShiftSampler": "srode-plugin-resshift",
    "EulerSampler": "srode-plugin-resshift",
    "HeunSampler": "srode-plugin-resshift",
    "EulerMaruyamaSampler": "srode-plugin-resshift",
    "DPMSolverPP2MSampler": "srode-plugin-resshift",
    "SeedEulerSampler": "srode-plugin-resshift",
    "SeedHeunSampler": "srode-plugin-resshift",
}


@dataclass(frozen=True)
class Component:
    """One named component offered by one distribution."""

    kind: str
    name: str
    value: str  # "module:object"
    distribution: str

    @property
    def module(self) -> str:
        return self.value.split(":", 1)[0].strip()

    @property
    def attribute(self) -> str:
        return self.value.split(":", 1)[1].strip() if ":" in self.value else ""


@dataclass
class PluginInfo:
    """What one installed distribution offers, read from its metadata."""

    distribution: str
    version: str
    api_required: str | None = None
    package: str | None = None
    components: dict[str, list[Component]] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    selfcheck: str | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        if not self.ok:
            return "broken: " + "; ".join(self.problems)
        return "; ".join(["ok", *self.notes])


def api_compatible(required: str, provided: str = API_VERSION) -> bool:
    """A plugin needing API `M.m` runs on a core providing `M.n` with n >= m."""
    try:
        req_major, req_minor = (int(p) for p in required.split(".")[:2])
        prov_major, prov_minor = (int(p) for p in provided.split(".")[:2])
    except ValueError:
        return False
    return req_major == prov_major and req_minor <= prov_minor


@dataclass
class Catalog:
    """All srode plugins installed in this environment."""

    plugins: dict[str, PluginInfo]
    conflicts: dict[tuple[str, str], list[Component]]

    def kinds(self) -> list[str]:
        found = {kind for info in self.plugins.values() for kind in info.components}
        return sorted(found | set(BASICSR_KINDS))

    def find(self, kind: str, name: str) -> list[Component]:
        return [c for info in self.plugins.values() for c in info.components.get(kind, []) if c.name == name]

    def names(self, kind: str) -> list[str]:
        return sorted({c.name for info in self.plugins.values() for c in info.components.get(kind, [])})

    def command_providers(self) -> dict[str, list[tuple[str, str]]]:
        """{command: [(distribution, "module:function"), ...]} for every plugin command (core names left out)."""
        found: dict[str, list[tuple[str, str]]] = {}
        for info in sorted(self.plugins.values(), key=lambda i: i.distribution):
            for name, target in info.commands.items():
                if name not in CORE_COMMANDS:
                    found.setdefault(name, []).append((info.distribution, target))
        return found

    def command(self, name: str) -> str:
        """The "module:function" of plugin command `name`; two distributions offering it is an error naming both."""
        providers = self.command_providers()[name]
        if len(providers) > 1:
            from srode_plugins.errors import DuplicateComponentError

            raise DuplicateComponentError(
                f"command 'basicsr {name}' is provided by {' and '.join(d for d, _ in providers)}; uninstall one of "
                "them (pip uninstall ...) or ask its authors to rename the command")
        return providers[0][1]

    def kind_of(self, name: str) -> list[str]:
        return sorted({c.kind for info in self.plugins.values() for cs in info.components.values()
                       for c in cs if c.name == name})


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


def _all_entry_points() -> list[tuple[metadata.EntryPoint, metadata.Distribution]]:
    """Every `srode.*` entry point with its distribution (a distribution seen twice on sys.path counts once)."""
    seen: set[str] = set()
    points = []
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name or _canonical(name) in seen:
            continue
        srode_points = [ep for ep in dist.entry_points if ep.group.startswith(GROUP_PREFIX)]
        if srode_points:
            seen.add(_canonical(name))
            points.extend((ep, dist) for ep in srode_points)
    return points


def scan() -> Catalog:
    """Read every `srode.*` entry point of every installed distribution (no imports)."""
    plugins: dict[str, PluginInfo] = {}
    for ep, dist in _all_entry_points():
        dist_name = dist.metadata["Name"]
        info = plugins.setdefault(_canonical(dist_name), PluginInfo(distribution=dist_name, version=dist.version))
        group = ep.group[len(GROUP_PREFIX):]
        if group == "api":
            info.api_required, info.package = ep.name, ep.value.split(":")[0]
        elif group == "options":
            info.options[ep.name] = ep.value
        elif group == "commands":
            info.commands[ep.name] = ep.value
        elif group == "plugin" and ep.name == "selfcheck":
            info.selfcheck = ep.value
        elif group not in META_GROUPS:
            info.components.setdefault(group, []).append(Component(group, ep.name, ep.value, dist_name))
    conflicts = _find_conflicts(plugins)
    command_owners = {info.distribution: set(info.commands) for info in plugins.values()}
    for info in plugins.values():
        _check_plugin(info, conflicts, command_owners)
    return Catalog(plugins=plugins, conflicts=conflicts)


def _find_conflicts(plugins: dict[str, PluginInfo]) -> dict[tuple[str, str], list[Component]]:
    by_key: dict[tuple[str, str], list[Component]] = {}
    for info in plugins.values():
        for kind, comps in info.components.items():
            for comp in comps:
                by_key.setdefault((kind, comp.name), []).append(comp)
    return {k: v for k, v in by_key.items() if len({c.distribution for c in v}) > 1}


def _check_plugin(info: PluginInfo, conflicts: dict[tuple[str, str], list[Component]],
                  command_owners: dict[str, set[str]]) -> None:
    if _canonical(info.distribution) != CORE_DISTRIBUTION:
        if info.api_required is None:
            info.problems.append(
                f"declares no core API version (entry point group 'srode.api'); core has {API_VERSION}"
            )
        elif not api_compatible(info.api_required):
            info.problems.append(
                f"needs srode core API {info.api_required}, this core provides {API_VERSION}: "
                f"install a matching version of {info.distribution} or of srode-plugins"
            )
    for (kind, name), comps in sorted(conflicts.items()):
        if any(c.distribution == info.distribution for c in comps):
            others = sorted({c.distribution for c in comps} - {info.distribution})
            info.problems.append(f"{kind[:-1] if kind.endswith('s') else kind} '{name}' also provided by "
                                 f"{', '.join(others)}")
    for name in sorted(info.commands):
        if name in CORE_COMMANDS:
            info.problems.append(f"command '{name}' has the name of the core's `basicsr {name}`, which it cannot "
                                 f"replace; rename it in {info.distribution}'s entry points (group srode.commands)")
        others = sorted(other for other, commands in command_owners.items()
                        if other != info.distribution and name in commands)
        if others:
            info.problems.append(f"command '{name}' also provided by {', '.join(others)}")
    for kind, comps in sorted(info.components.items()):
        for name in sorted({c.name for c in comps} & set(BASICSR_SUFFIXED.get(kind, ()))):
            info.notes.append(f"{kind[:-1]} '{name}' replaces BasicSR's {name}_basicsr wherever an option "
                              f"file writes '{name}'")
    packages = {c.module.split(".")[0] for cs in info.components.values() for c in cs}
    for package in sorted(packages):
        if importlib.util.find_spec(package) is None:
            info.problems.append(f"package '{package}' is not importable (reinstall {info.distribution})")


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The catalog of this process (scanned once; `refresh()` after installing a plugin)."""
    return scan()


def refresh() -> Catalog:
    catalog.cache_clear()
    return catalog()
