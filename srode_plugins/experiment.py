"""One training run per experiment folder: an OS lock held for the whole run, and archiving that stays inside it.

`basicsr train` takes an exclusive `fcntl.flock` on `experiments/<name>/.srode-train.lock` before it reads or
writes anything in the folder. The kernel drops the lock when the process ends however it ends (kill -9
included), so a lock file left by a dead run never blocks; a second live run on the same folder stops with one
line naming the holder. BasicSR's `make_exp_dirs` renames the whole folder away on a fresh start, which would
move the lock with it; here the previous run's files move into `<name>_archived_<time>/` and the locked folder
(and its lock file) stay where they are.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import sys
from pathlib import Path
from typing import IO, Any

from srode_plugins.checkpoints import clean_stale_temp_files
from srode_plugins.errors import ExperimentInUse, OptionError

LOCK_NAME = ".srode-train.lock"


def check_experiment_name(name: Any, file: str | None = None) -> None:
    """`name` must be one plain folder name: it becomes `experiments/<name>`, which a fresh run archives."""
    if not isinstance(name, str) or name.strip() in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise OptionError(f"value {name!r}: the experiment name becomes the folder experiments/<name>; use a plain "
                          "folder name such as EDSR_x4 (not empty, not '.' or '..', no '/' or '\\')",
                          file=file, key="name")


class ExperimentLock:
    """An exclusive flock on `<folder>/.srode-train.lock`, held until `release()` or the end of the process."""

    def __init__(self, folder: Path, handle: IO[str] | None) -> None:
        self.folder = folder
        self._handle = handle

    @classmethod
    def acquire(cls, folder: str | os.PathLike[str]) -> ExperimentLock:
        """Lock `folder` (created if missing) or raise ExperimentInUse naming the process that holds it."""
        import fcntl

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # Never unlink the lock file: a process that opened the old inode would then lock a different file.
        handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115  (held for the whole run)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a process that has not written its details yet"
            handle.close()
            raise ExperimentInUse(f"experiment folder '{folder}' is in use by another training run ({holder}); "
                                  "wait for it to finish or stop it, or give this run another `name:`") from None
        handle.seek(0)
        handle.truncate()
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()}, started {started}: "
                     f"{' '.join(sys.argv)}\n")
        handle.flush()
        return cls(folder, handle)

    @property
    def held(self) -> bool:
        return self._handle is not None and not self._handle.closed

    def release(self) -> None:
        """Drop the lock (closing the file releases the flock). Idempotent."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ExperimentLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_experiment_lock(opt: dict[str, Any]) -> ExperimentLock:
    """Lock the run's experiment folder (rank 0; other ranks get an unheld lock) and remove the temp files that
    interrupted checkpoint writes left there. Call before reading training states or archiving."""
    check_experiment_name(opt.get("name"), opt.get("opt_file"))
    folder = Path(opt["path"]["experiments_root"])
    if opt.get("rank", 0) != 0:
        return ExperimentLock(folder, None)
    lock = ExperimentLock.acquire(folder)
    removed = clean_stale_temp_files(opt["path"].get("models") or folder / "models",
                                     opt["path"].get("training_states") or folder / "training_states")
    if removed:
        logging.getLogger("basicsr").warning(f"Removed {len(removed)} temp file(s) left by interrupted checkpoint "
                                             f"writes: {', '.join(p.name for p in removed[:5])}")
    return lock


def make_exp_dirs(opt: dict[str, Any], lock: ExperimentLock) -> Path | None:
    """A fresh start in a locked folder: move the previous run's files into `<folder>_archived_<time>/` (only
    the contents of this experiment's own folder) and create the run's folders. Returns the archive, if any."""
    folder = Path(opt["path"]["experiments_root"])
    if not lock.held or lock.folder.resolve() != folder.resolve():
        raise RuntimeError(f"archiving '{folder}' needs this run's lock on it")
    previous = [entry for entry in folder.iterdir() if entry.name != LOCK_NAME]
    # Empty run folders (a start that stopped at a check) are not worth an archive.
    has_files = any(not p.is_dir() for entry in previous for p in (entry, *entry.rglob("*")))
    archive = _new_archive_folder(folder) if has_files else None
    previous = previous if has_files else []
    for entry in previous:
        entry.rename(archive / entry.name)
    if archive is not None:
        logging.getLogger("basicsr").info(f"Moved the previous run's files of '{folder.name}' to {archive}")
    for key, path in opt["path"].items():
        if key in ("models", "training_states", "log", "visualization") and path:
            Path(path).mkdir(parents=True, exist_ok=True)
    return archive


def _new_archive_folder(folder: Path) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    for attempt in range(1000):
        archive = folder.with_name(f"{folder.name}_archived_{stamp}" + (f"_{attempt}" if attempt else ""))
        try:
            archive.mkdir()
        except FileExistsError:
            continue
        return archive
    raise FileExistsError(f"no free archive name for '{folder}'")
