"""Locating pretrained weights on disk. Nothing is ever downloaded."""

from __future__ import annotations

import os
from pathlib import Path

from srode_plugins.errors import MissingWeightsError


def torch_cache_checkpoints() -> Path:
    """The folder torch.hub keeps downloaded checkpoints in ($TORCH_HOME/hub/checkpoints)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


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

    Raises MissingWeightsError naming the file, where to put it and how to run without it.
    """
    if path:
        candidate = Path(os.path.expanduser(str(path)))
        if candidate.is_file():
            return candidate
        raise MissingWeightsError(
            f"{what}: option '{option_key}' points to '{candidate}', which does not exist. "
            f"Put the file '{default_name}' there (srode never downloads weights), or {disable_hint}."
        )
    searched = [torch_cache_checkpoints() / default_name, *extra_candidates]
    for candidate in searched:
        if candidate.is_file():
            return candidate
    places = ", ".join(f"'{p}'" for p in searched)
    raise MissingWeightsError(
        f"{what}: weights file '{default_name}' not found (looked in {places}). srode never downloads weights: "
        f"copy the file to '{searched[0]}' or set option '{option_key}' to its path, or {disable_hint}."
    )
