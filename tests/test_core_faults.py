"""Fault injection: kill -9 during saves, concurrent runs of one experiment, corrupt checkpoints and images, full disk.

Every case is bounded by a timeout and sorted into an outcome: a one-line SrodeError naming the file or key
(`error`), a run that completes (`ran`), a Python traceback, a hang, or a lost / unloadable checkpoint. The
last three must be 0. RELIABILITY.md records the counts and the command.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from srode_plugins.checkpoints import clean_stale_temp_files, newest_loadable_state
from srode_plugins.errors import CheckpointError, SrodeError

CASE_TIMEOUT_S = 120
TINY_EDSR = {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "upscale": 2}
OUTCOMES: collections.Counter[str] = collections.Counter()


def tiny_option(name: str, network: dict, total_iter: int = 2) -> dict:
    """A 2x EDSR run on the demo data (CPU, seconds)."""
    dataset = {"type": "PairedImageDataset", "filename_tmpl": "{}", "io_backend": {"type": "disk"}}
    return {
        "name": name, "model_type": "SRModel", "scale": 2, "num_gpu": 0, "manual_seed": 0,
        "datasets": {"train": {**dataset, "name": "demo_train", "dataroot_gt": "demo://train/HR",
                               "dataroot_lq": "demo://train/LR_bicubic/X2", "gt_size": 32, "use_hflip": True,
                               "use_rot": True, "num_worker_per_gpu": 0, "batch_size_per_gpu": 2},
                     "val": {**dataset, "name": "demo_val", "dataroot_gt": "demo://val/HR",
                             "dataroot_lq": "demo://val/LR_bicubic/X2"}},
        "network_g": network,
        "path": {"pretrain_network_g": None, "resume_state": None},
        "train": {"optim_g": {"type": "Adam", "lr": 1e-3}, "total_iter": total_iter,
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0}},
        "val": {"val_freq": 10**6, "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 2}}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 10**6, "use_tb_logger": False},
    }


def write_option(folder: Path, opt: dict) -> Path:
    path = folder / "run.yml"
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


class CaseTimeout(BaseException):
    """Raised by SIGALRM when an in-process case runs past its timeout (a hang)."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------- kill -9 during saves


# Children are fresh interpreters, never forks of this process: a fork taken after torch has trained in-process
# can deadlock in OpenMP. The writer gets serialised checkpoints and writes them through atomic_save's own writer
# (temp file, fsync, rename, folder fsync), so it starts without importing torch.
SAVE_FOREVER = """
import sys
from pathlib import Path
from srode_plugins.checkpoints import _atomic_write
folder, weights, state = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]).read_bytes()
start = 1 + max([int(p.stem) for p in (folder / "training_states").glob("*.state")] or [0])
print("ready", flush=True)
for iteration in range(start, start + 10**6):
    _atomic_write(folder / "models" / f"net_g_{iteration}.pth", lambda h: h.write(weights))
    _atomic_write(folder / "training_states" / f"{iteration}.state", lambda h: h.write(state))
"""


def python_child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def kill_during_saves(folder: Path, payloads: tuple[Path, Path], rng: random.Random) -> str:
    child = python_child(SAVE_FOREVER, str(folder), *map(str, payloads))
    try:
        if child.stdout.readline().strip() != "ready":
            return "hang"
        time.sleep(rng.uniform(0.01, 0.3))
    finally:
        child.kill()  # SIGKILL
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            return "hang"
    removed = clean_stale_temp_files(folder / "models", folder / "training_states")
    OUTCOMES["kill -9 during saves: temp files left by the killed write, cleaned"] += len(removed)
    files = list((folder / "models").glob("*")) + list((folder / "training_states").glob("*"))
    if any(p.name.endswith(".tmp") for p in files):
        return "lost"
    for path in files:
        try:
            torch.load(path, weights_only=False)
        except Exception:
            return "lost"
    states = [int(p.stem) for p in (folder / "training_states").glob("*.state")]
    found = newest_loadable_state(folder / "training_states", {"network_g": {}, "path": {"models": folder / "models"}},
                                  "cpu")
    if states and (found is None or int(found[0].stem) != max(states)):
        return "lost"
    return "ran"


def kill_trials(tmp_path: Path, trials: int) -> collections.Counter[str]:
    rng = random.Random(15)
    outcomes: collections.Counter[str] = collections.Counter()
    folder = tmp_path / "killed"
    (folder / "models").mkdir(parents=True)
    (folder / "training_states").mkdir()
    payloads = (tmp_path / "weights.bin", tmp_path / "state.bin")
    torch.save({"params": {"w": torch.randn(1_000_000)}}, payloads[0])
    torch.save({"iter": 0, "epoch": 0, "optimizers": [], "schedulers": []}, payloads[1])
    for _ in range(trials):  # one folder: each trial goes on where the killed writer left off
        outcomes[kill_during_saves(folder, payloads, rng)] += 1
    OUTCOMES.update({f"kill -9 during saves: {k}": v for k, v in outcomes.items()})
    return outcomes


def test_kill_9_at_random_points_of_saves_leaves_only_loadable_checkpoints(tmp_path: Path) -> None:
    assert kill_trials(tmp_path, 6) == {"ran": 6}


@pytest.mark.slow
def test_kill_9_at_forty_random_points_of_saves(tmp_path: Path) -> None:
    assert kill_trials(tmp_path, 40) == {"ran": 40}


# ----------------------------------------------------------------------------- two runs of one experiment


HOLD_EXPERIMENT = """
import signal, sys
from pathlib import Path
from srode_plugins.checkpoints import _atomic_write
from srode_plugins.experiment import acquire_experiment_lock
exp = Path(sys.argv[1]) / "experiments" / "same"
opt = {"name": "same", "rank": 0, "path": {"experiments_root": str(exp), "models": str(exp / "models"),
                                           "training_states": str(exp / "training_states")}}
with acquire_experiment_lock(opt):
    _atomic_write(exp / "models" / "net_g_7.pth", lambda h: h.write(b"weights of the first run"))
    print("ready", flush=True)
    signal.pause()
"""


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_run_of_a_live_experiment_refuses_and_leaves_the_first_runs_files(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch
                                                                                   ) -> None:
    from srode_plugins.engine.train import train

    first = python_child(HOLD_EXPERIMENT, str(tmp_path))
    try:
        assert first.stdout.readline().strip() == "ready"
        before = digests(tmp_path / "experiments")
        monkeypatch.chdir(tmp_path)
        with time_limit(CASE_TIMEOUT_S), pytest.raises(SrodeError) as info:
            train(str(write_option(tmp_path, tiny_option("same", TINY_EDSR))), root=tmp_path)
        assert f"in use by another training run (pid {first.pid} on host " in str(info.value)
        assert digests(tmp_path / "experiments") == before
        assert sorted(p.name for p in (tmp_path / "experiments").iterdir()) == ["same"]  # nothing archived
        OUTCOMES["concurrent same-name run: error"] += 1
    finally:
        first.kill()
        first.wait(30)


# ----------------------------------------------------------------------------- corrupt inputs, in-process


@dataclass(frozen=True)
class Case:
    """A broken input: `damage(root, opt)` breaks files or options; `expect` is in the error line (None: runs)."""

    name: str
    damage: Callable[[Path, dict], None]
    expect: str | None
    auto_resume: bool = False


def copy_demo_data(root: Path, opt: dict) -> None:
    from srode_plugins.data.demo import demo_dataset

    paths = demo_dataset(2)
    for phase, hr, lr in (("train", paths.train_hr, paths.train_lr), ("val", paths.val_hr, paths.val_lr)):
        shutil.copytree(hr, root / "data" / phase / "HR")
        shutil.copytree(lr, root / "data" / phase / "LR")
        opt["datasets"][phase].update(dataroot_gt=str(root / "data" / phase / "HR"),
                                      dataroot_lq=str(root / "data" / phase / "LR"))


def first_image(root: Path, phase: str = "train", side: str = "HR") -> Path:
    return sorted((root / "data" / phase / side).iterdir())[0]


def pretrained(content: Callable[[bytes], bytes]) -> Callable[[Path, dict], None]:
    def damage(root: Path, opt: dict) -> None:
        good = root / "good.pth"
        torch.save({"params": {"w": torch.zeros(1000)}}, good)
        (root / "weights.pth").write_bytes(content(good.read_bytes()))
        opt["path"]["pretrain_network_g"] = str(root / "weights.pth")

    return damage


def states(damaged: Callable[[bytes], bytes], keep_older: bool) -> Callable[[Path, dict], None]:
    """Two saved iterations (2, 4) of a real run; the newest state (and the older one unless `keep_older`) damaged."""

    def damage(root: Path, opt: dict) -> None:
        from srode_plugins.engine.train import train

        run = {**opt, "train": {**opt["train"], "total_iter": 4},
               "logger": {**opt["logger"], "save_checkpoint_freq": 2}}
        train(str(write_option(root, run)), root=root)
        folder = root / "experiments" / opt["name"] / "training_states"
        for iteration in (4,) if keep_older else (4, 2):
            path = folder / f"{iteration}.state"
            path.write_bytes(damaged(path.read_bytes()))
        opt["train"]["total_iter"] = 5

    return damage


def set_key(path: str, value: object) -> Callable[[Path, dict], None]:
    def damage(root: Path, opt: dict) -> None:
        node = opt
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value

    return damage


def image(change: Callable[[Path, Path], None]) -> Callable[[Path, dict], None]:
    return lambda root, opt: change(root, first_image(root))


def resize_val_hr(root: Path, opt: dict) -> None:
    import cv2

    path = first_image(root, "val")
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (40, 40)))


def scale_mismatch(root: Path, opt: dict) -> None:
    import cv2

    path = first_image(root, "train", "LR")
    img = cv2.imread(str(path))
    cv2.imwrite(str(path), cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2)))


def empty_train_folder(root: Path, opt: dict) -> None:
    for side in ("HR", "LR"):
        for path in (root / "data" / "train" / side).iterdir():
            path.unlink()


CASES = [
    Case("empty pretrained weights", pretrained(lambda b: b""), "weights.pth' is empty"),
    Case("truncated pretrained weights", pretrained(lambda b: b[: len(b) // 2]), "weights.pth' cannot be loaded"),
    Case("garbage pretrained weights", pretrained(lambda b: b"not a checkpoint" * 10), "weights.pth' cannot be loaded"),
    Case("truncated newest state, intact older one", states(lambda b: b[: len(b) // 3], keep_older=True), None,
         auto_resume=True),
    Case("every state truncated", states(lambda b: b[:100], keep_older=False), "none of the 2 training states",
         auto_resume=True),
    Case("empty newest state", states(lambda b: b"", keep_older=True), None, auto_resume=True),
    Case("corrupt image in the training folder", image(lambda root, p: p.write_bytes(p.read_bytes()[:200])),
         "is not a readable image"),
    Case("empty image file", image(lambda root, p: p.write_bytes(b"")), "is empty"),
    Case("text file in the training folder", image(lambda root, p: p.write_text("notes")), "not a readable image"),
    Case("empty training folder", empty_train_folder, "holds no images"),
    Case("LR/HR file counts differ", image(lambda root, p: p.unlink()), "every HR image needs exactly one LR"),
    Case("LR/HR scale mismatch (train)", scale_mismatch, "at scale 2 the HR must be"),
    Case("LR/HR size mismatch (val)", resize_val_hr, "datasets.val.dataroot_lq"),
    Case("batch larger than the dataset", set_key("datasets.train.batch_size_per_gpu", 64), "batch is larger"),
    Case("dataset_enlarge_ratio 0", set_key("datasets.train.dataset_enlarge_ratio", 0), "dataset_enlarge_ratio"),
    Case("name ''", set_key("name", ""), "option 'name'"),
    Case("name '.'", set_key("name", "."), "option 'name'"),
    Case("name '..'", set_key("name", ".."), "option 'name'"),
    Case("name 'a/b'", set_key("name", "a/b"), "option 'name'"),
]


def run_case_in_process(case: Case, root: Path) -> tuple[str, str]:
    """(outcome, detail) of training on the damaged input in this process, bounded by CASE_TIMEOUT_S."""
    from srode_plugins.engine.train import train

    opt = tiny_option("faults", TINY_EDSR, total_iter=2)
    copy_demo_data(root, opt)
    name = opt["name"]
    try:
        with time_limit(CASE_TIMEOUT_S):
            case.damage(root, opt)
            option = write_option(root, {**opt, "name": name})
            option.write_text(option.read_text().replace(f"name: {name}\n", f"name: {opt['name']!r}\n", 1))
            result = train(str(option), root=root, auto_resume=case.auto_resume)
    except SrodeError as exc:
        message = str(exc)
        return ("error" if "\n" not in message else "multi-line error"), message
    except CaseTimeout as exc:
        return "hang", str(exc)
    except Exception as exc:  # anything else reaches the user as a traceback
        return "traceback", f"{type(exc).__name__}: {exc}"
    return "ran", f"finished at iteration {result.iter if hasattr(result, 'iter') else result['iter']}"


def lost_checkpoints(root: Path) -> int:
    """Checkpoint files under experiments/ that no longer load."""
    lost = 0
    for path in [*root.glob("experiments/*/models/*"), *root.glob("experiments/*/training_states/*")]:
        try:
            torch.load(path, weights_only=False)
        except Exception:
            lost += 1
    return lost


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_corrupt_input_ends_in_one_line_naming_it_or_trains(case: Case, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    outcome, detail = run_case_in_process(case, tmp_path)
    OUTCOMES[f"corrupt input: {outcome}"] += 1
    assert outcome == ("ran" if case.expect is None else "error"), detail
    if case.expect is not None:
        assert case.expect in detail
    if case.auto_resume and case.expect is None:
        assert "finished at iteration 5" in detail
    damaged_states = 1 if case.auto_resume and case.expect is None else 2 if case.auto_resume else 0
    assert lost_checkpoints(tmp_path) == damaged_states  # only the files the case damaged itself


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_through_the_cli_a_corrupt_input_prints_one_error_line_and_no_traceback(case: Case, tmp_path: Path) -> None:
    opt = tiny_option("faults", TINY_EDSR, total_iter=2)
    copy_demo_data(tmp_path, opt)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        case.damage(tmp_path, opt)
    finally:
        os.chdir(cwd)
    option = write_option(tmp_path, {**opt, "name": "placeholder"})
    option.write_text(option.read_text().replace("name: placeholder\n", f"name: {opt['name']!r}\n", 1))
    args = ["-m", "srode_plugins", "train", "-opt", str(option)] + (["--auto_resume"] if case.auto_resume else [])
    try:
        done = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=CASE_TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        OUTCOMES["CLI corrupt input: hang"] += 1
        raise
    traceback = "Traceback (most recent call last)" in done.stderr
    OUTCOMES[f"CLI corrupt input: {'traceback' if traceback else 'error' if done.returncode == 2 else 'ran'}"] += 1
    assert not traceback, done.stderr[-3000:]
    if case.expect is None:
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert done.returncode == 2 and len(errors) == 1 and case.expect in errors[0], done.stderr[-3000:]


# ----------------------------------------------------------------------------- a full disk


FILL_DISK = """
import resource, signal, sys
from pathlib import Path
import torch
from srode_plugins.checkpoints import atomic_save
from srode_plugins.errors import CheckpointError
target = Path(sys.argv[1]) / "net_g_1.pth"
atomic_save({"w": torch.zeros(10)}, target)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write() instead of death by signal
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
try:
    atomic_save({"w": torch.zeros(100_000)}, target)
    print("ran")
except CheckpointError as exc:
    print("error", exc)
"""


def test_a_file_size_limit_during_a_save_is_one_line_and_keeps_the_previous_file(tmp_path: Path) -> None:
    try:
        done = subprocess.run([sys.executable, "-c", FILL_DISK, str(tmp_path)], capture_output=True, text=True,
                              timeout=CASE_TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        OUTCOMES["disk full (RLIMIT_FSIZE): hang"] += 1
        raise
    outcome, _, message = done.stdout.strip().partition(" ")
    traceback = "Traceback" in done.stderr
    OUTCOMES[f"disk full (RLIMIT_FSIZE): {'traceback' if traceback else outcome}"] += 1
    assert outcome == "error" and not traceback, done.stdout + done.stderr[-3000:]
    assert f"could not write checkpoint '{tmp_path / 'net_g_1.pth'}': File too large (errno EFBIG)" in message
    assert "earlier checkpoints are intact" in message and "\n" not in message
    assert torch.equal(torch.load(tmp_path / "net_g_1.pth")["w"], torch.zeros(10))
    assert [p.name for p in tmp_path.iterdir()] == ["net_g_1.pth"]


def test_a_disk_full_during_training_stops_with_one_line_and_keeps_earlier_checkpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from srode_plugins import checkpoints
    from srode_plugins.engine.train import train

    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_until_full(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > 6:  # the first iterations' checkpoints land, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(checkpoints.os, "fsync", fsync_until_full)
    monkeypatch.chdir(tmp_path)
    opt = tiny_option("full", TINY_EDSR, total_iter=6)
    opt["logger"]["save_checkpoint_freq"] = 1
    with time_limit(CASE_TIMEOUT_S), pytest.raises(CheckpointError) as info:
        train(str(write_option(tmp_path, opt)), root=tmp_path)
    OUTCOMES["disk full during training: error"] += 1
    assert "No space left on device (errno ENOSPC)" in str(info.value) and "\n" not in str(info.value)
    exp = tmp_path / "experiments" / "full"
    assert lost_checkpoints(tmp_path) == 0
    assert (exp / "training_states" / "1.state").is_file()
    assert not list(exp.rglob("*.tmp"))


def test_zz_outcome_counts(capsys: pytest.CaptureFixture) -> None:
    """Prints the outcome counts of the cases run above (for RELIABILITY.md); none may be a failure kind."""
    with capsys.disabled():
        for key, count in sorted(OUTCOMES.items()):
            print(f"\n  {key}: {count}", end="")
        print()
    assert not any(k.endswith((": traceback", ": hang", ": lost", ": multi-line error")) for k in OUTCOMES)
