"""Atomic checkpoint writes, checked checkpoint reads and finding the newest loadable training state."""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from srode_plugins.errors import CheckpointError

# safetensors metadata key listing the BasicSR param keys a file holds (see atomic_save_safetensors)
PARAM_KEYS_METADATA = "param_keys"
# tempfile.mkstemp(prefix=".<name>.", suffix=".tmp") names: what an interrupted atomic_save leaves behind.
TEMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _atomic_write(target: Path, write: Callable[[BinaryIO], None]) -> Path:
    """`write` into a temp file beside `target`, fsync, rename over `target`, fsync the folder.

    The file gets the mode the umask gives new files (mkstemp creates 0600). A full disk or another OS error
    raises CheckpointError (one line naming the file and the fix) after removing the temp file.
    """
    tmp_name = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
        _fsync_folder(target.parent)
    except BaseException as exc:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        os_error = _os_error_in(exc)
        if os_error is None or not isinstance(exc, (OSError, RuntimeError)):
            raise
        raise CheckpointError(_write_failure(target, os_error)) from None
    return target


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask is a process-wide swap)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; some file systems cannot fsync a directory (EINVAL): nothing to do there.
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind `exc`: torch.save reports a failed write as a RuntimeError chained to it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _write_failure(target: Path, error: OSError) -> str:
    reason = f"{error.strerror or error} (errno {errno.errorcode.get(error.errno or 0, error.errno)})"
    if error.errno in NO_SPACE:
        fix = f"free disk space (or raise the quota / file size limit) for '{target.parent}'"
    elif error.errno in NOT_WRITABLE:
        fix = f"make '{target.parent}' writable"
    else:
        fix = f"check the disk and the folder '{target.parent}'"
    return (f"could not write checkpoint '{target}': {reason}. The earlier checkpoints are intact; {fix} and resume "
            "with --auto_resume")


def clean_stale_temp_files(*folders: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files interrupted atomic saves left in `folders`; returns what was removed.

    Only call this while holding the experiment lock: a live run writes its temp files into the same folders.
    """
    removed = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if TEMP_FILE.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def load_checkpoint(path: str | os.PathLike[str], *, what: str = "checkpoint", key: str | None = None,
                    fix: str = "replace the file", map_location: Any = "cpu", weights_only: bool = True) -> Any:
    """torch.load `path`; a missing, empty, truncated or corrupt file raises CheckpointError, one line naming
    the file, the option `key` (if any) and `fix`."""
    import torch

    file = _existing_nonempty(path, what=what, key=key, fix=fix)
    try:
        return torch.load(file, map_location=map_location, weights_only=weights_only)
    except Exception as exc:  # torch.load reports damage as EOFError, RuntimeError, KeyError, UnpicklingError ...
        raise CheckpointError(f"{_where(key)}{what} '{file}' cannot be loaded: {_load_failure(exc)}; {fix}") from None


def _where(key: str | None) -> str:
    return f"option '{key}': " if key else ""


def _existing_nonempty(path: str | os.PathLike[str], *, what: str, key: str | None, fix: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{_where(key)}{what} '{file}' does not exist; {fix}")
    if file.stat().st_size == 0:
        raise CheckpointError(f"{_where(key)}{what} '{file}' is empty (an interrupted copy or write?); {fix}")
    return file


def _load_failure(exc: Exception) -> str:
    message = str(exc).strip()
    if isinstance(exc, EOFError):
        return "it ends too early (truncated)"
    if "central directory" in message:
        return "it is truncated or not a complete PyTorch archive"
    if "Weights only load failed" in message:
        return "it holds Python objects, not only tensors (torch.load with weights_only refused it)"
    first = message.splitlines()[0][:160] if message else ""
    return f"{type(exc).__name__}{': ' + first if first else ''} (not a checkpoint, or damaged)"


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """torch.save `obj` to `path` through a temp file in the same folder and an atomic rename.

    A crash or Ctrl-C while writing leaves the previous file (if any) intact, never a truncated one.
    """
    import torch

    return _atomic_write(Path(path), lambda handle: torch.save(obj, handle))


def atomic_save_safetensors(networks: dict[str, dict[str, Any]], path: str | os.PathLike[str],
                            metadata: dict[str, str] | None = None) -> Path:
    """Write network weights as safetensors, atomically like `atomic_save`.

    `networks` maps BasicSR param keys ("params", "params_ema") to state dicts; a file holds them as
    `<param key>.<tensor name>` with the param keys listed in the metadata `param_keys`, which
    `read_state_dict` reads back.
    """
    from safetensors.torch import save

    tensors = {f"{key}.{name}": tensor.detach().cpu().contiguous()
               for key, state in networks.items() for name, tensor in state.items()}
    header = {**(metadata or {}), PARAM_KEYS_METADATA: ",".join(networks)}
    return _atomic_write(Path(path), lambda handle: handle.write(save(tensors, metadata=header)))


NUMBERED_CHECKPOINT = re.compile(r"^(?P<label>.+)_(?P<iter>\d+)\.(?:pth|safetensors)$")


def prune_checkpoints(models: str | os.PathLike[str], states: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """`logger.keep_last: N`: delete all but the newest N iterations' checkpoints (`<net>_<iter>.pth` /
    `.safetensors` in `models`, `<iter>.state` in `states`); `*_latest` files and N = 0 keep everything.
    Returns the deleted files."""
    if keep_last <= 0:
        return []
    models, states = Path(models), Path(states)
    numbered = [(int(m["iter"]), path) for path in (models.iterdir() if models.is_dir() else [])
                if (m := NUMBERED_CHECKPOINT.match(path.name))]
    numbered += [(int(path.stem), path) for path in (states.glob("*.state") if states.is_dir() else [])
                 if path.stem.isdigit()]
    keep = set(sorted({it for it, _ in numbered}, reverse=True)[:keep_last])
    removed = [path for it, path in numbered if it not in keep]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def latest_training_state(folder: str | os.PathLike[str]) -> Path | None:
    """The `<iter>.state` file with the highest iteration in `folder`, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    states = [p for p in folder.glob("*.state") if p.stem.isdigit()]
    return max(states, key=lambda p: int(p.stem)) if states else None


def _read_safetensors(path: Path, param_key: str | None) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as handle:
        listed = ((handle.metadata() or {}).get(PARAM_KEYS_METADATA) or "").split(",")
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    held = [key for key in listed if key]
    if not held:  # a bare state dict (e.g. exported, or from another toolkit)
        return tensors
    chosen = param_key if param_key in held else ("params" if "params" in held else held[0])
    prefix = f"{chosen}."
    return {name.removeprefix(prefix): t for name, t in tensors.items() if name.startswith(prefix)}


def read_state_dict(path: str | os.PathLike[str], param_key: str | None = "params_ema", *,
                    option_key: str | None = None) -> dict[str, Any]:
    """Network weights from a BasicSR checkpoint (.pth, or .safetensors as `atomic_save_safetensors` writes it):
    `param_key` (falling back to `params`) or a bare state dict.

    An unreadable file, or one holding no state dict, raises CheckpointError naming the file and `option_key`.
    """
    what, fix = "network weights", "replace it with a complete weights file (or drop the option)"
    if Path(path).suffix.lower() == ".safetensors":
        file = _existing_nonempty(path, what=what, key=option_key, fix=fix)
        try:
            loaded = _read_safetensors(file, param_key)
        except Exception as exc:  # safetensors raises its own SafetensorError on a damaged header or data
            raise CheckpointError(f"{_where(option_key)}{what} '{file}' cannot be loaded: {_load_failure(exc)}; "
                                  f"{fix}") from None
    else:
        loaded = load_checkpoint(path, what=what, key=option_key, fix=fix)
    state = unwrap_state_dict(loaded, param_key)
    if state is None:
        raise CheckpointError(f"{_where(option_key)}'{path}' holds no network state dict (found "
                              f"{type(loaded).__name__}); point the option at a file of network weights")
    return state


WRAPPER_KEYS = ("params", "params_ema", "state_dict")  # BasicSR's two, then the official-release / Lightning one
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile


def unwrap_state_dict(checkpoint: Any, param_key: str | None = "params_ema") -> dict[str, Any] | None:
    """The network state dict inside a loaded checkpoint, or None when it holds none.

    `param_key` is tried first, then `params`, `params_ema`, `state_dict` (BasicSR falls back the same way);
    a bare state dict is taken as it is. Key prefixes from wrappers ('module.', '_orig_mod.') are removed.
    """
    if isinstance(checkpoint, dict):
        for key in (param_key, *WRAPPER_KEYS):
            if key and isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not all(isinstance(k, str) for k in checkpoint):
        return None
    return {strip_wrapper_prefixes(k): v for k, v in checkpoint.items()}


def strip_wrapper_prefixes(key: str) -> str:
    """'module._orig_mod.conv.weight' -> 'conv.weight'."""
    stripped = None
    while stripped != key:
        stripped = key
        for prefix in WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
    return key


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
    loaded = read_state_dict(file, param_key, option_key=option_key)
    net_state = net.state_dict()
    problems = describe_mismatch(net_state, loaded)
    # load_state_dict rejects a shape mismatch even with strict=False.
    if problems and (strict or shape_mismatches(net_state, loaded)):
        raise OptionError(f"checkpoint '{file}' does not match the network: {problems}. Check the network options "
                          f"(e.g. num_block, num_feat, scale) or set path.strict_load_g: false.", key=option_key)
    net.load_state_dict(loaded, strict=strict)


def load_resume_state(opt: dict[str, Any], device: Any) -> dict[str, Any] | None:
    """The training state to resume from, mapped onto `device`; None when there is nothing to resume.

    `path.resume_state`, or with `opt['auto_resume']` the newest LOADABLE state in `path.training_states` (else
    `<root_path>/experiments/<name>/training_states`): a state that cannot be read, or whose network files cannot,
    is skipped with a warning saying why. Also points the networks' pretrain paths at the checkpoints of that
    iteration (BasicSR's check_resume). An unreadable `path.resume_state` raises CheckpointError.
    """
    from basicsr.utils import check_resume

    if opt["auto_resume"]:
        folder = opt["path"].get("training_states") or (
            Path(opt.get("root_path") or os.getcwd()) / "experiments" / opt["name"] / "training_states"
        )
        found = newest_loadable_state(folder, opt, device)
        if found is None:
            return None
        path, state = found
        opt["path"]["resume_state"] = str(path)
    elif opt["path"].get("resume_state"):
        path = Path(opt["path"]["resume_state"])
        state = _read_training_state(path, device, key="path.resume_state",
                                     fix="point path.resume_state at another <iter>.state file")
    else:
        return None
    check_resume(opt, state["iter"])
    return state


def newest_loadable_state(folder: str | os.PathLike[str], opt: dict[str, Any],
                          device: Any) -> tuple[Path, dict[str, Any]] | None:
    """The highest-iteration `<iter>.state` in `folder` that loads, with the network files of its iteration.

    None when `folder` holds no state; CheckpointError when it holds states and none of them loads.
    """
    logger = logging.getLogger("basicsr")
    folder = Path(folder)
    states = sorted((p for p in folder.glob("*.state") if p.stem.isdigit()), key=lambda p: -int(p.stem)) \
        if folder.is_dir() else []
    fix = "an older state is tried next"
    problems = []
    for path in states:
        try:
            state = _read_training_state(path, device, fix=fix)
            for network_file in _resume_network_files(opt, int(path.stem)):
                read_state_dict(network_file, None)
        except CheckpointError as exc:
            problems.append(str(exc).removesuffix(f"; {fix}"))
            logger.warning(f"Auto-resume: {exc}.")
            continue
        if problems:
            logger.warning(f"Resuming from '{path}' instead ({len(problems)} newer state(s) skipped).")
        return path, state
    if problems:
        raise CheckpointError(f"none of the {len(problems)} training states in '{folder}' can be loaded (newest: "
                              f"{problems[0]}); delete the damaged files to start again from an older state, or "
                              "run without --auto_resume to start fresh")
    return None


def _read_training_state(path: Path, device: Any, *, fix: str, key: str | None = None) -> dict[str, Any]:
    # Training states are written by this engine or BasicSR (trusted local files) and hold optimizer objects.
    state = load_checkpoint(path, what="training state", key=key, fix=fix, map_location=device, weights_only=False)
    if not isinstance(state, dict) or not {"iter", "epoch", "optimizers", "schedulers"} <= set(state):
        where = f"option '{key}': " if key else ""
        raise CheckpointError(f"{where}'{path}' is not a training state (no iter / epoch / optimizers / "
                              f"schedulers); {fix}")
    return state


def _resume_network_files(opt: dict[str, Any], resume_iter: int) -> list[Path]:
    """The `net_<x>_<iter>.pth` files BasicSR's check_resume will load for a resume at `resume_iter`."""
    models = opt["path"].get("models")
    if not models:
        return []
    ignored = opt["path"].get("ignore_resume_networks") or ()
    files = []
    for key in opt:
        if key.startswith("network_") and key not in ignored:
            file = Path(models) / f"net_{key.removeprefix('network_')}_{resume_iter}.pth"
            other_formats = sorted(file.parent.glob(f"{file.stem}.*")) if not file.exists() else []
            files.append(other_formats[0] if other_formats else file)
    return files
