"""The experiment lock: one live run per experiment folder, archiving only inside that folder."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from pathlib import Path

import pytest

from srode_plugins.errors import ExperimentInUse, OptionError
from srode_plugins.experiment import (
    LOCK_NAME,
    ExperimentLock,
    acquire_experiment_lock,
    check_experiment_name,
    make_exp_dirs,
)


def run_opt(root: Path, name: str = "exp") -> dict:
    exp = root / "experiments" / name
    return {"name": name, "rank": 0, "opt_file": "opts/x.yml",
            "path": {"experiments_root": str(exp), "models": str(exp / "models"),
                     "training_states": str(exp / "training_states"), "log": str(exp),
                     "visualization": str(exp / "visualization"), "pretrain_network_g": None}}


def hold_lock(folder: str, ready: multiprocessing.synchronize.Event) -> None:
    with ExperimentLock.acquire(folder):
        ready.set()
        signal.pause()


@pytest.fixture
def lock_holder(tmp_path: Path):
    """A forked process holding the lock on tmp_path/experiments/exp until the test ends (then kill -9)."""
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    process = context.Process(target=hold_lock, args=(str(tmp_path / "experiments" / "exp"), ready), daemon=True)
    process.start()
    assert ready.wait(30)
    yield process
    if process.is_alive():
        os.kill(process.pid, signal.SIGKILL)
    process.join(30)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../other", "a\\b", " ", None])
def test_empty_or_path_like_experiment_names_are_refused(name: object) -> None:
    with pytest.raises(OptionError, match=r"opts/x.yml: option 'name': value .*plain folder name"):
        check_experiment_name(name, "opts/x.yml")


def test_a_second_run_refuses_naming_the_pid_host_and_start_of_the_first(tmp_path: Path, lock_holder) -> None:
    with pytest.raises(ExperimentInUse) as info:
        acquire_experiment_lock(run_opt(tmp_path))
    message = str(info.value)
    assert f"pid {lock_holder.pid} on host {socket.gethostname()}, started " in message
    assert "another `name:`" in message and "\n" not in message


def test_a_lock_file_left_by_a_killed_run_does_not_block(tmp_path: Path, lock_holder) -> None:
    os.kill(lock_holder.pid, signal.SIGKILL)
    lock_holder.join(30)
    assert (tmp_path / "experiments" / "exp" / LOCK_NAME).is_file()
    with acquire_experiment_lock(run_opt(tmp_path)) as lock:
        assert lock.held
        assert f"pid {os.getpid()} " in (tmp_path / "experiments" / "exp" / LOCK_NAME).read_text()


def test_release_lets_the_next_run_lock_the_folder(tmp_path: Path) -> None:
    first = acquire_experiment_lock(run_opt(tmp_path))
    with pytest.raises(ExperimentInUse):
        acquire_experiment_lock(run_opt(tmp_path))
    first.release()
    acquire_experiment_lock(run_opt(tmp_path)).release()


def test_taking_the_lock_removes_stale_temp_files_only(tmp_path: Path) -> None:
    models = tmp_path / "experiments" / "exp" / "models"
    models.mkdir(parents=True)
    (models / ".net_g_5.pth.k2j4_x9a.tmp").write_bytes(b"half")
    (models / "net_g_4.pth").write_bytes(b"kept")
    (models / "notes.tmp").write_bytes(b"kept")
    with acquire_experiment_lock(run_opt(tmp_path)):
        assert sorted(p.name for p in models.iterdir()) == ["net_g_4.pth", "notes.tmp"]


def test_a_fresh_start_archives_only_this_experiments_files_and_keeps_the_lock(tmp_path: Path) -> None:
    exp = tmp_path / "experiments" / "exp"
    (exp / "models").mkdir(parents=True)
    (exp / "models" / "net_g_5.pth").write_bytes(b"old")
    (tmp_path / "experiments" / "other" / "models").mkdir(parents=True)
    with acquire_experiment_lock(run_opt(tmp_path)) as lock:
        archive = make_exp_dirs(run_opt(tmp_path), lock)
        assert archive is not None and archive.parent == exp.parent and archive.name.startswith("exp_archived_")
        assert (archive / "models" / "net_g_5.pth").read_bytes() == b"old"
        assert sorted(p.name for p in exp.iterdir()) == [LOCK_NAME, "models", "training_states", "visualization"]
        assert (tmp_path / "experiments" / "other" / "models").is_dir()
        with pytest.raises(ExperimentInUse):  # the lock stayed with the folder, not with the archive
            acquire_experiment_lock(run_opt(tmp_path))
        assert make_exp_dirs(run_opt(tmp_path), lock) is None  # only empty run folders: nothing to archive
    assert sorted(p.name for p in tmp_path.joinpath("experiments").iterdir()) == ["exp", archive.name, "other"]


def test_archiving_needs_the_lock_on_that_folder(tmp_path: Path) -> None:
    with acquire_experiment_lock(run_opt(tmp_path, "a")) as lock, pytest.raises(RuntimeError, match="needs this run"):
        make_exp_dirs(run_opt(tmp_path, "b"), lock)
