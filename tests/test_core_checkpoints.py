"""Atomic checkpoint writes, finding the newest training state, reading weights and explaining mismatches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from srode_plugins.checkpoints import (
    atomic_save,
    describe_mismatch,
    latest_training_state,
    load_network_weights,
    read_state_dict,
)
from srode_plugins.errors import OptionError


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
