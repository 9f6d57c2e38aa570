"""Atomic checkpoint writes, finding the newest training state, reading weights and explaining mismatches."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from srode_plugins.checkpoints import (
    atomic_save,
    clean_stale_temp_files,
    describe_mismatch,
    latest_training_state,
    load_network_weights,
    load_resume_state,
    read_state_dict,
)
from srode_plugins.errors import CheckpointError, OptionError


class Unpicklable:
    """Fails while being written, like a crash in the middle of torch.save."""

    def __reduce__(self) -> tuple:
        raise RuntimeError("interrupted while writing")


def test_atomic_save_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "models" / "net_g_5.pth"
    assert atomic_save({"v": torch.zeros(2)}, target) == target
    atomic_save({"v": torch.ones(2)}, target)
    assert torch.equal(torch.load(target)["v"], torch.ones(2))
    assert [p.name for p in target.parent.iterdir()] == ["net_g_5.pth"]


def test_a_failed_atomic_save_keeps_the_old_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "5.state"
    atomic_save({"iter": 5}, target)
    before = target.read_bytes()

    with pytest.raises(RuntimeError, match="interrupted while writing"):
        atomic_save({"iter": 6, "bad": Unpicklable()}, target)

    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["5.state"]


def test_a_failed_first_save_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        atomic_save(Unpicklable(), tmp_path / "net.pth")
    assert list(tmp_path.iterdir()) == []


def test_latest_training_state_is_the_highest_iteration_not_the_newest_name(tmp_path: Path) -> None:
    assert latest_training_state(tmp_path / "missing") is None
    assert latest_training_state(tmp_path) is None
    for name in ("900.state", "1000.state", "95.state", "latest.state", "1000.pth", "20000.state.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert latest_training_state(tmp_path) == tmp_path / "1000.state"


def test_read_state_dict_prefers_the_requested_key_then_params_then_a_bare_dict(tmp_path: Path) -> None:
    ema, plain = {"w": torch.ones(1)}, {"w": torch.zeros(1)}
    torch.save({"params": plain, "params_ema": ema}, tmp_path / "both.pth")
    torch.save({"params": {"module.w": torch.zeros(1)}}, tmp_path / "ddp.pth")
    torch.save(plain, tmp_path / "bare.pth")

    assert torch.equal(read_state_dict(tmp_path / "both.pth")["w"], ema["w"])
    assert torch.equal(read_state_dict(tmp_path / "both.pth", "params")["w"], plain["w"])
    assert list(read_state_dict(tmp_path / "ddp.pth")) == ["w"]  # params_ema absent: params, 'module.' stripped
    assert torch.equal(read_state_dict(tmp_path / "bare.pth", None)["w"], plain["w"])


def test_describe_mismatch_lists_the_first_few_of_each_problem() -> None:
    net = {f"layer{i}.weight": torch.zeros(1) for i in range(7)} | {"head.weight": torch.zeros(3, 3)}
    loaded = {"head.weight": torch.zeros(2, 3), "extra.bias": torch.zeros(1)}

    assert describe_mismatch(net, loaded) == (
        "7 missing: layer0.weight, layer1.weight, layer2.weight, layer3.weight, layer4.weight (+2 more); "
        "1 unexpected: extra.bias; "
        "1 shape mismatch: head.weight: checkpoint (2, 3) vs network (3, 3)")
    assert describe_mismatch(net, net) == ""


class Reshaper(nn.Module):
    def __init__(self, with_reshape: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        if with_reshape:
            self.reshape = nn.Linear(1, 1)


def test_non_strict_loading_accepts_missing_keys_whatever_their_names(tmp_path: Path) -> None:
    source = Reshaper(with_reshape=False)
    torch.save({"params": source.state_dict()}, tmp_path / "net.pth")
    target = Reshaper(with_reshape=True)  # 'reshape.weight' missing: a name containing "shape", not a shape problem

    load_network_weights(target, tmp_path / "net.pth", option_key="path.pretrain_network_g", strict=False)

    assert torch.equal(target.conv.weight, source.conv.weight)
    with pytest.raises(OptionError, match=r"'path.pretrain_network_g': .*2 missing: reshape.bias, reshape.weight"):
        load_network_weights(target, tmp_path / "net.pth", option_key="path.pretrain_network_g", strict=True)


def test_a_shape_mismatch_is_refused_even_when_not_strict(tmp_path: Path) -> None:
    torch.save({"params": nn.Conv2d(1, 2, 1).state_dict()}, tmp_path / "net.pth")
    with pytest.raises(OptionError) as error:
        load_network_weights(nn.Conv2d(1, 3, 1), tmp_path / "net.pth", option_key="--weights", strict=False)
    message = str(error.value)
    assert "option '--weights': checkpoint" in message
    assert "2 shape mismatch: bias: checkpoint (2,) vs network (3,), weight: checkpoint (2, 1, 1, 1) vs network " \
           "(3, 1, 1, 1)" in message
    assert "num_block, num_feat, scale" in message


def test_loading_a_missing_checkpoint_names_the_option_and_file(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match=r"option '--weights': checkpoint '.*nothing\.pth' does not exist"):
        load_network_weights(nn.Conv2d(1, 1, 1), tmp_path / "nothing.pth", option_key="--weights")


def test_checkpoint_files_get_the_mode_the_umask_gives_new_files(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        path = atomic_save({"v": torch.zeros(1)}, tmp_path / "net_g_1.pth")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 & ~0o027, not mkstemp's 0o600


def test_the_folder_is_fsynced_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_save({"v": torch.zeros(1)}, tmp_path / "5.state")
    assert synced == ["file", "dir"]


@pytest.mark.parametrize(("code", "fix"), [(errno.ENOSPC, "free disk space"), (errno.EACCES, "writable"),
                                           (errno.EIO, "check the disk")])
def test_an_os_error_during_a_save_is_one_line_and_keeps_the_previous_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, fix: str) -> None:
    target = atomic_save({"iter": 4}, tmp_path / "4.state")

    def failing_fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(CheckpointError) as info:
        atomic_save({"iter": 5}, target)
    message = str(info.value)
    assert message.startswith(f"could not write checkpoint '{target}': {os.strerror(code)} (errno "
                              f"{errno.errorcode[code]})")
    assert fix in message and "--auto_resume" in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    monkeypatch.undo()
    assert torch.load(target) == {"iter": 4}
    assert [p.name for p in tmp_path.iterdir()] == ["4.state"]


def test_stale_temp_files_are_removed_and_checkpoints_kept(tmp_path: Path) -> None:
    for name in (".net_g_5.pth.abc12_xy.tmp", ".5.state.q1w2e3r4.tmp", "net_g_4.pth", "4.state", "my.tmp"):
        (tmp_path / name).write_bytes(b"x")
    removed = clean_stale_temp_files(tmp_path, tmp_path / "missing")
    assert sorted(p.name for p in removed) == [".5.state.q1w2e3r4.tmp", ".net_g_5.pth.abc12_xy.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4.state", "my.tmp", "net_g_4.pth"]


@pytest.mark.parametrize(("content", "reason"), [
    (lambda good: b"", "is empty"),
    (lambda good: good[: len(good) // 2], "cannot be loaded: it is truncated"),
    (lambda good: b"plain text, not a checkpoint", "cannot be loaded"),
])
def test_a_damaged_pretrained_checkpoint_names_the_option_and_the_file(tmp_path: Path, content, reason: str) -> None:
    good = tmp_path / "good.pth"
    torch.save({"params": nn.Linear(2, 2).state_dict()}, good)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content(good.read_bytes()))
    with pytest.raises(CheckpointError) as info:
        load_network_weights(nn.Linear(2, 2), bad, option_key="path.pretrain_network_g")
    message = str(info.value)
    assert message.startswith(f"option 'path.pretrain_network_g': network weights '{bad}' {reason}")
    assert "\n" not in message


def write_run(folder: Path, iterations: list[int]) -> dict:
    """Training states and generator weights of `iterations`; returns the matching opt."""
    (folder / "models").mkdir(parents=True)
    (folder / "training_states").mkdir()
    for iteration in iterations:
        atomic_save({"params": {"w": torch.ones(1)}}, folder / "models" / f"net_g_{iteration}.pth")
        atomic_save({"iter": iteration, "epoch": 0, "optimizers": [], "schedulers": []},
                    folder / "training_states" / f"{iteration}.state")
    return {"name": "exp", "auto_resume": True, "network_g": {"type": "EDSR"},
            "path": {"models": str(folder / "models"), "training_states": str(folder / "training_states"),
                     "resume_state": None}}


def test_auto_resume_skips_a_truncated_newest_state_and_says_why(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    opt = write_run(tmp_path, [2, 4, 6])
    newest = tmp_path / "training_states" / "6.state"
    newest.write_bytes(newest.read_bytes()[:50])
    (tmp_path / "models" / "net_g_4.pth").write_bytes(b"")  # iteration 4's weights are damaged too

    with caplog.at_level(logging.WARNING, logger="basicsr"):
        state = load_resume_state(opt, "cpu")

    assert state["iter"] == 2 and opt["path"]["pretrain_network_g"] == str(tmp_path / "models" / "net_g_2.pth")
    assert f"training state '{newest}' cannot be loaded" in caplog.text
    assert f"'{tmp_path / 'models' / 'net_g_4.pth'}' is empty" in caplog.text
    assert "Resuming from" in caplog.text and "(2 newer state(s) skipped)" in caplog.text


def test_auto_resume_with_no_loadable_state_is_one_line_naming_the_folder(tmp_path: Path) -> None:
    opt = write_run(tmp_path, [2])
    (tmp_path / "training_states" / "2.state").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"none of the 1 training states in '.*training_states' can be loaded "
                                              r"\(newest: training state '.*2.state' is empty"):
        load_resume_state(opt, "cpu")


def test_an_unreadable_resume_state_option_names_the_key(tmp_path: Path) -> None:
    opt = write_run(tmp_path, [2])
    state = tmp_path / "training_states" / "2.state"
    state.write_bytes(state.read_bytes()[:10])
    opt.update(auto_resume=False)
    opt["path"]["resume_state"] = str(state)
    with pytest.raises(CheckpointError, match=r"^option 'path.resume_state': training state '.*2.state' cannot"):
        load_resume_state(opt, "cpu")
