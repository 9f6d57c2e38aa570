"""Pretrained weights: where they live on disk, which ones srode knows, and `basicsr weights fetch`.

Nothing downloads implicitly: code that needs a file calls `resolve_weights`, which only looks on disk and,
when the file is missing, names the `basicsr weights fetch NAME` command that downloads it. The registry is
the core's table of generic backbones (`CORE_WEIGHTS`) plus what plugins declare in the `srode.weights`
entry-point group (entry name = registry name, value = `pkg.module:OBJECT`, a `WeightsFile`).

Kept light on purpose (no torch import): `basicsr weights list` and plugin weight tables import it.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import importlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from srode_plugins.errors import DuplicateComponentError, MissingWeightsError, SrodeError

WEIGHTS_GROUP_KIND = "weights"  # entry-point group `srode.weights`
CORE_PROVIDER = "srode-plugins"
_CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


class UnknownWeightsError(SrodeError):
    """A weights name that no registry entry has."""


class WeightsDownloadError(SrodeError):
    """A download failed, was interrupted, or delivered a file whose hash or size is wrong."""


@dataclass(frozen=True)
class WeightsFile:
    """One pretrained file srode can use.

    name: registry name (`basicsr weights fetch NAME`). filename: the file name in the torch cache.
    url: where `fetch` downloads it from.
    sha256: the published SHA-256 in lowercase hex: the full 64 digits, or a prefix of at least 8 (torch.hub's
        `name-<sha256 prefix>.pth` file-name convention), or None when no published value could be checked
        (then `fetch` prints the computed digest and warns).
    size_mib: published size in MiB (rounded as published), or None when unknown.
    used_by: what needs the file (option keys, components). source: where url / hash / size come from.
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    size_mib: float | None = None
    used_by: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.sha256 is not None and (len(self.sha256) < 8 or not set(self.sha256) <= _HEX):
            raise ValueError(f"weights '{self.name}': sha256 {self.sha256!r} is not >= 8 lowercase hex digits")

    @property
    def hash_check(self) -> str:
        """'sha256' (full digest), 'sha256 prefix' (torch.hub file-name convention) or 'none'."""
        if self.sha256 is None:
            return "none"
        return "sha256" if len(self.sha256) == 64 else "sha256 prefix"

    def matches(self, digest: str) -> bool:
        """Whether a computed hex SHA-256 agrees with the published value (always False without one)."""
        return self.sha256 is not None and digest.lower().startswith(self.sha256)

    def size_matches(self, size_bytes: int) -> bool:
        """Whether a byte count agrees with the published size to the published rounding (True when unknown)."""
        if self.size_mib is None:
            return True
        decimals = len(repr(self.size_mib).split(".")[1]) if "." in repr(self.size_mib) else 0
        return abs(size_bytes / 2**20 - self.size_mib) <= 0.5 * 10.0**-decimals


def _torchvision(name: str, filename: str, size_mib: float, used_by: str) -> WeightsFile:
    return WeightsFile(
        name=name,
        filename=filename,
        url=f"https://download.pytorch.org/models/{filename}",
        sha256=filename.rsplit("-", 1)[1].split(".")[0],
        size_mib=size_mib,
        used_by=used_by,
        source="torchvision ImageNet weights: URL and size (MiB) from torchvision's weight metadata; hash = the "
        "8-digit SHA-256 prefix in the file name (torch.hub convention); no full published SHA-256 was found",
    )


#: Generic backbones any family may use. Model-family checkpoints come from plugins (`srode.weights`).
CORE_WEIGHTS: tuple[WeightsFile, ...] = (
    _torchvision("vgg19", "vgg19-dcbb9e9d.pth", 548.051,
                 "VGG perceptual loss (train.perceptual_opt, vgg_type: vgg19), LocalVGGPerceptualLoss"),
    _torchvision("vgg19_bn", "vgg19_bn-c79401a0.pth", 548.143, "VGG perceptual loss with vgg_type: vgg19_bn"),
    _torchvision("vgg16", "vgg16-397923af.pth", 527.796,
                 "LPIPS net: vgg backbone; DISTS backbone; VGG perceptual loss with vgg_type: vgg16"),
    _torchvision("alexnet", "alexnet-owt-7be5be79.pth", 233.087, "LPIPS net: alex backbone (the LPIPS default)"),
)


class WeightsRegistry:
    """Named `WeightsFile`s and who provides each; duplicate names are refused (DuplicateComponentError)."""

    def __init__(self) -> None:
        self._entries: dict[str, WeightsFile] = {}
        self._providers: dict[str, str] = {}
        #: Plugin entries that could not be loaded, one line each (shown by `basicsr weights list`).
        self.problems: list[str] = []

    def add(self, entry: WeightsFile, provider: str) -> None:
        if entry.name in self._entries:
            raise DuplicateComponentError(
                f"weights '{entry.name}' is declared by both {self._providers[entry.name]} and {provider}; "
                "uninstall one of them or rename the entry in its 'srode.weights' entry points"
            )
        self._entries[entry.name] = entry
        self._providers[entry.name] = provider

    def get(self, name: str) -> WeightsFile:
        if name in self._entries:
            return self._entries[name]
        near = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(near)}?" if near else ""
        raise UnknownWeightsError(
            f"no weights named '{name}'.{hint} Known: {', '.join(sorted(self._entries))} (see `basicsr weights list`)."
        )

    def for_file(self, filename: str) -> WeightsFile | None:
        return next((entry for entry in self._entries.values() if entry.filename == filename), None)

    def provider(self, name: str) -> str:
        return self._providers[name]

    def __iter__(self) -> Iterator[WeightsFile]:
        return iter(sorted(self._entries.values(), key=lambda entry: entry.name))


def _add_plugin_entries(registry: WeightsRegistry) -> None:
    from srode_plugins.discovery import catalog

    for info in catalog().plugins.values():
        for point in info.components.get(WEIGHTS_GROUP_KIND, []):
            where = f"{info.distribution} entry point srode.weights '{point.name}' = '{point.value}'"
            try:
                entry = getattr(importlib.import_module(point.module), point.attribute)
            except (ImportError, AttributeError) as error:
                registry.problems.append(f"{where}: cannot load it ({error}); reinstall {info.distribution}")
                continue
            if not isinstance(entry, WeightsFile) or entry.name != point.name:
                registry.problems.append(f"{where}: not a WeightsFile named '{point.name}'")
                continue
            try:
                registry.add(entry, info.distribution)
            except DuplicateComponentError as error:
                registry.problems.append(str(error))


def weights_registry() -> WeightsRegistry:
    """The core's `CORE_WEIGHTS` plus every installed plugin's `srode.weights` entries (imports only those)."""
    registry = WeightsRegistry()
    for entry in CORE_WEIGHTS:
        registry.add(entry, CORE_PROVIDER)
    _add_plugin_entries(registry)
    return registry


def torch_cache_checkpoints() -> Path:
    """The folder torch.hub keeps downloaded checkpoints in ($TORCH_HOME/hub/checkpoints)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def fetch_command(filename: str) -> str | None:
    """`basicsr weights fetch NAME` for a registered file name, else None."""
    entry = weights_registry().for_file(filename)
    return None if entry is None else f"basicsr weights fetch {entry.name}"


def resolve_weights(
    path: str | os.PathLike[str] | None,
    *,
    what: str,
    option_key: str,
    default_name: str,
    disable_hint: str,
    extra_candidates: tuple[Path, ...] = (),
) -> Path:
    """Find a weights file: the given path, else `default_name` in the torch cache or `extra_candidates`.

    Raises MissingWeightsError naming the file, where to put it, the `basicsr weights fetch` command that
    downloads it (for registered files) and how to run without it. Never downloads anything.
    """
    if path:
        candidate = Path(os.path.expanduser(str(path)))
        if candidate.is_file():
            return candidate
        command = fetch_command(default_name)
        cache = torch_cache_checkpoints()
        fetch = f" `{command}` downloads it into '{cache}' (then drop the option)." if command else ""
        raise MissingWeightsError(
            f"{what}: option '{option_key}' points to '{candidate}', which does not exist. "
            f"Put the file '{default_name}' there (srode never downloads weights by itself), or {disable_hint}.{fetch}"
        )
    searched = [torch_cache_checkpoints() / default_name, *extra_candidates]
    for candidate in searched:
        if candidate.is_file():
            return candidate
    places = ", ".join(f"'{p}'" for p in searched)
    command = fetch_command(default_name)  # only on failure: it reads every plugin's weights table
    fetch = f" Download it with: {command}" if command else ""
    raise MissingWeightsError(
        f"{what}: weights file '{default_name}' not found (looked in {places}). srode never downloads weights by "
        f"itself: copy the file to '{searched[0]}' or set option '{option_key}' to its path, or {disable_hint}.{fetch}"
    )


# ---------------------------------------------------------------- fetch


@dataclass(frozen=True)
class FetchedWeights:
    """Result of `fetch_weights`: where the file is, its SHA-256, and whether it was downloaded now."""

    entry: WeightsFile
    path: Path
    sha256: str
    downloaded: bool

    @property
    def verified(self) -> bool:
        return self.entry.matches(self.sha256)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(entry: WeightsFile, digest: str, path: Path) -> None:
    if entry.sha256 is not None and not entry.matches(digest):
        raise WeightsDownloadError(
            f"'{path}' has SHA-256 {digest}, but weights '{entry.name}' must have {entry.hash_check} {entry.sha256} "
            f"({entry.url}); the file is wrong or corrupt: delete it and run `basicsr weights fetch {entry.name}` again"
        )


def _open(entry: WeightsFile, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": "srode-plugins (basicsr weights fetch)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(entry.url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        raise WeightsDownloadError(
            f"weights '{entry.name}': {entry.url} answered HTTP {error.code} {error.reason}; check the URL in the "
            f"registry ({CORE_PROVIDER if entry in CORE_WEIGHTS else 'its plugin'}) or download the file by hand"
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise WeightsDownloadError(
            f"weights '{entry.name}': cannot reach {entry.url} ({reason}); check the network or proxy, or download "
            f"the file by hand into '{torch_cache_checkpoints()}'"
        ) from error


def _resumed(response: http.client.HTTPResponse, offset: int) -> bool:
    content_range = response.headers.get("Content-Range", "")
    return bool(offset) and response.status == 206 and content_range.startswith(f"bytes {offset}-")


def _download(entry: WeightsFile, part: Path, *, progress: bool, timeout: float) -> None:
    """Download `entry` into `part`, appending to what an interrupted run left there when the server allows."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(entry, offset, timeout)
    except WeightsDownloadError as error:
        cause = error.__cause__
        if not (offset and isinstance(cause, urllib.error.HTTPError) and cause.code == 416):
            raise
        part.unlink()  # 416: the partial file is no prefix of what the server has now, start over
        offset = 0
        response = _open(entry, offset, timeout)
    with response:
        if not _resumed(response, offset):
            offset = 0  # the server sent the whole file: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        if total is not None and not entry.size_matches(total):
            raise WeightsDownloadError(
                f"weights '{entry.name}': {entry.url} serves {total} bytes, but the registry says {entry.size_mib} "
                "MiB; the server has a different file: nothing was kept; check the URL in the registry"
            )
        received = offset
        with open(part, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=entry.filename,
            disable=not progress,
        ) as bar:
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
                    received += len(chunk)
            except (http.client.IncompleteRead, OSError) as error:
                reason = f" ({type(error).__name__})"
            else:
                reason = ""
    if reason or (total is not None and received < total):
        of_total = f" of {total}" if total is not None else ""
        raise WeightsDownloadError(
            f"weights '{entry.name}': the download from {entry.url} stopped at {received}{of_total} bytes{reason}; "
            f"the partial file '{part}' is kept: run `basicsr weights fetch {entry.name}` again to resume it"
        )


def fetch_weights(
    entry: WeightsFile, directory: Path | None = None, *, progress: bool = True, timeout: float = 60.0
) -> FetchedWeights:
    """Download `entry` into `directory` (default: the torch cache) unless it is already there, and check its hash.

    The download goes to `<filename>.part`, is resumed with an HTTP Range request after an interruption, and is
    renamed into place only once complete and matching the registry's SHA-256; a mismatching file is deleted.
    Raises WeightsDownloadError naming the file, the URL and the fix.
    """
    directory = torch_cache_checkpoints() if directory is None else Path(directory)
    target = directory / entry.filename
    if target.is_file():
        digest = sha256_of(target)
        _check_digest(entry, digest, target)
        return FetchedWeights(entry, target, digest, downloaded=False)
    directory.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    _download(entry, part, progress=progress, timeout=timeout)
    digest = sha256_of(part)
    if entry.sha256 is not None and not entry.matches(digest):
        part.unlink()
        raise WeightsDownloadError(
            f"weights '{entry.name}': the file downloaded from {entry.url} has SHA-256 {digest}, but the registry "
            f"says {entry.hash_check} {entry.sha256}; it was deleted, nothing was installed. The server now serves a "
            "different file: check the URL and hash in the registry"
        )
    os.replace(part, target)
    return FetchedWeights(entry, target, digest, downloaded=True)


__all__ = [
    "CORE_WEIGHTS",
    "FetchedWeights",
    "UnknownWeightsError",
    "WeightsDownloadError",
    "WeightsFile",
    "WeightsRegistry",
    "fetch_command",
    "fetch_weights",
    "resolve_weights",
    "sha256_of",
    "torch_cache_checkpoints",
    "weights_registry",
]
