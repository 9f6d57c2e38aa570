"""x2 -> x3 / x4 initialisation: every scale-independent tensor is copied, the upsampler stays new.

Networks are randomly initialised (no pretrained weights are used anywhere in these tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import srode_plugins.api  # noqa: F401  (applies the BasicSR compat patches; before basicsr)

# isort: split
from basicsr.archs.edsr_arch import EDSR
from basicsr.archs.rrdbnet_arch import RRDBNet
from srode_baselines.scale_transfer import (
    UPSAMPLER_PREFIXES,
    CheckpointFormatError,
    load_basicsr_params,
    transfer_weights,
)


def small_edsr(scale: int, seed: int) -> EDSR:
    torch.manual_seed(seed)
    return EDSR(num_in_ch=3, num_out_ch=3, num_feat=16, num_block=2, upscale=scale)


@pytest.mark.parametrize("target_scale", [3, 4])
def test_edsr_x2_to_larger_scale_copies_every_shared_tensor_and_leaves_the_upsampler_new(target_scale):
    source = small_edsr(2, seed=1)
    target = small_edsr(target_scale, seed=2)
    fresh = {name: tensor.clone() for name, tensor in target.state_dict().items()}

    report = transfer_weights(source.state_dict(), target, UPSAMPLER_PREFIXES["EDSR"])

    upsampler = sorted(name for name in fresh if name.startswith("upsample."))
    shared = sorted(name for name in fresh if not name.startswith("upsample."))
    assert report.copied == shared
    assert report.new == upsampler
    assert report.unused == sorted(name for name in source.state_dict() if name.startswith("upsample."))
    result = target.state_dict()
    for name in shared:
        assert torch.equal(result[name], source.state_dict()[name]), name
    for name in upsampler:
        assert torch.equal(result[name], fresh[name]), name


def test_x2_to_x4_leaves_the_first_upsampler_stage_new_although_its_shape_matches():
    # upsample.0 is conv(16 -> 64) at x2 and at x4: only the prefix rule keeps it fresh.
    source, target = small_edsr(2, seed=1), small_edsr(4, seed=2)
    assert source.state_dict()["upsample.0.weight"].shape == target.state_dict()["upsample.0.weight"].shape
    report = transfer_weights(source.state_dict(), target, UPSAMPLER_PREFIXES["EDSR"])
    assert "upsample.0.weight" in report.new
    without_rule = transfer_weights(source.state_dict(), small_edsr(4, seed=2))
    assert "upsample.0.weight" in without_rule.copied


def test_rrdbnet_x2_to_x4_leaves_only_the_pixel_unshuffled_input_conv_new():
    # RRDBNet x2 pixel-unshuffles its input (12 channels into conv_first); everything after is scale-free.
    torch.manual_seed(0)
    source = RRDBNet(3, 3, scale=2, num_feat=8, num_block=1, num_grow_ch=4)
    target = RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    report = transfer_weights(source.state_dict(), target, UPSAMPLER_PREFIXES["RRDBNet"])
    assert report.new == ["conv_first.weight"]
    assert report.unused == ["conv_first.weight"]
    assert len(report.copied) == len(target.state_dict()) - 1


def test_a_basicsr_checkpoint_is_read_with_ema_fallback_and_module_prefix_removed(tmp_path: Path):
    state = small_edsr(2, seed=0).state_dict()
    path = tmp_path / "net_g.pth"
    torch.save({"params": {f"module.{name}": tensor for name, tensor in state.items()}}, path)
    loaded = load_basicsr_params(path, param_key="params_ema")  # absent: falls back to params, as BasicSR does
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[name], state[name]) for name in state)


def test_a_checkpoint_without_the_requested_entry_names_what_it_has(tmp_path: Path):
    path = tmp_path / "state.pth"
    torch.save({"iter": 5, "optimizers": []}, path)
    with pytest.raises(CheckpointFormatError, match="it has: iter, optimizers"):
        load_basicsr_params(path)


def test_report_summary_lists_new_and_unused_tensors():
    report = transfer_weights(small_edsr(2, 1).state_dict(), small_edsr(4, 2), UPSAMPLER_PREFIXES["EDSR"])
    summary = report.summary()
    assert summary.startswith(f"copied {len(report.copied)} tensors; 4 left new; 2 source tensors unused")
    assert "new:    upsample.2.weight" in summary
