"""Atomic checkpoint writes and finding the newest training state."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """torch.save `obj` to `path` through a temp file in the same folder and an atomic rename.

    A crash or Ctrl-C while writing leaves the previous file (if any) intact, never a truncated one.
    """
    import torch

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def latest_training_state(folder: str | os.PathLike[str]) -> Path | None:
    """The `<iter>.state` file with the highest iteration in `folder`, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    states = [p for p in folder.glob("*.state") if p.stem.isdigit()]
    return max(states, key=lambda p: int(p.stem)) if states else None


def read_state_dict(path: str | os.PathLike[str], param_key: str | None = "params_ema") -> dict[str, Any]:
    """Network weights from a BasicSR checkpoint: `param_key` (falling back to `params`) or a bare state dict."""
    import torch

    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, dict) and param_key and param_key in loaded:
        loaded = loaded[param_key]
    elif isinstance(loaded, dict) and "params" in loaded:
        loaded = loaded["params"]
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def shape_mismatches(net_state: dict[str, Any], loaded: dict[str, Any]) -> list[str]:
    """Keys present in both state dicts whose tensor shapes differ (sorted)."""
    return [k for k in sorted(set(net_state) & set(loaded)) if tuple(loaded[k].shape) != tuple(net_state[k].shape)]


def describe_mismatch(net_state: dict[str, Any], loaded: dict[str, Any], first: int = 5) -> str:
    """One line per problem: missing keys, unexpected keys, shape mismatches (first few of each)."""
    missing = sorted(set(net_state) - set(loaded))
    unexpected = sorted(set(loaded) - set(net_state))
    shapes = [f"{k}: checkpoint {tuple(loaded[k].shape)} vs network {tuple(net_state[k].shape)}"
              for k in shape_mismatches(net_state, loaded)]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - first} more)" if len(items) > first else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:first])}{more}")
    return "; ".join(parts)


def load_network_weights(net: Any, path: str | os.PathLike[str], *, option_key: str, strict: bool = True,
                         param_key: str | None = "params_ema") -> None:
    """Load a checkpoint into `net`; a key/shape mismatch raises OptionError listing the first few problems."""
    from srode_plugins.errors import OptionError

    file = Path(path)
    if not file.is_file():
        raise OptionError(f"checkpoint '{file}' does not exist", key=option_key)
    loaded = read_state_dict(file, param_key)
    net_state = net.state_dict()
    problems = describe_mismatch(net_state, loaded)
    # load_state_dict rejects a shape mismatch even with strict=False.
    if problems and (strict or shape_mismatches(net_state, loaded)):
        raise OptionError(f"checkpoint '{file}' does not match the network: {problems}. Check the network options "
                          f"(e.g. num_block, num_feat, scale) or set path.strict_load_g: false.", key=option_key)
    net.load_state_dict(loaded, strict=strict)


def load_resume_state(opt: dict[str, Any], device: Any) -> dict[str, Any] | None:
    """The training state to resume from, mapped onto `device`; None when there is nothing to resume.

    `path.resume_state`, or with `opt['auto_resume']` the newest state in `path.training_states` (else
    `<root_path>/experiments/<name>/training_states`). Also points the networks' pretrain paths at the
    checkpoints of that iteration (BasicSR's check_resume).
    """
    import torch
    from basicsr.utils import check_resume

    path = None
    if opt["auto_resume"]:
        folder = opt["path"].get("training_states") or (
            Path(opt.get("root_path") or os.getcwd()) / "experiments" / opt["name"] / "training_states"
        )
        path = latest_training_state(folder)
        if path is not None:
            opt["path"]["resume_state"] = str(path)
    elif opt["path"].get("resume_state"):
        path = opt["path"]["resume_state"]
    if path is None:
        return None
    # Training states are written by this engine or BasicSR (trusted local files) and hold optimizer objects.
    state = torch.load(path, map_location=device, weights_only=False)
    check_resume(opt, state["iter"])
    return state
