"""Recognise BasicSR's EDSR and RRDBNet weights by their keys and shapes (entry points `srode.detectors`).

They build BasicSR's own (trainable) classes, so `path.pretrain_network_g` alone starts a fine-tuning run.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from srode_plugins.api import ArchMatch, indices, pixel_shuffle_scale


def detect_edsr(state_dict: Mapping[str, Tensor]) -> ArchMatch | None:
    """EDSR arguments, or None for other archs. res_scale, img_range and rgb_mean leave no trace in the weights
    and keep BasicSR's defaults (the official EDSR-L uses res_scale 0.1: pass it as an override)."""
    required = ("conv_first.weight", "body.0.conv1.weight", "body.0.conv2.weight", "conv_after_body.weight",
                "upsample.0.weight", "conv_last.weight")
    if not all(key in state_dict for key in required):
        return None
    num_feat, num_in_ch = state_dict["conv_first.weight"].shape[:2]
    scale = pixel_shuffle_scale(state_dict, "upsample.", int(num_feat))
    if scale is None:
        return None
    options = {"num_in_ch": int(num_in_ch), "num_out_ch": int(state_dict["conv_last.weight"].shape[0]),
               "num_feat": int(num_feat), "num_block": len(indices(state_dict, "body.")), "upscale": scale}
    return ArchMatch(options, scale)


def detect_rrdbnet(state_dict: Mapping[str, Tensor]) -> ArchMatch | None:
    """RRDBNet (ESRGAN, Real-ESRGAN) arguments, or None for other archs. x1 and x2 models see the image through
    a pixel unshuffle (16 or 4 times the channels at conv_first); conv_last gives the output channels."""
    required = ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight", "conv_up1.weight",
                "conv_up2.weight", "conv_hr.weight", "conv_last.weight")
    if not all(key in state_dict for key in required):
        return None
    num_feat, first_in = state_dict["conv_first.weight"].shape[:2]
    num_out_ch = int(state_dict["conv_last.weight"].shape[0])
    # BasicSR's RRDBNet ties num_in_ch to the unshuffled width; assume num_in_ch == num_out_ch as it does.
    scale = {num_out_ch: 4, 4 * num_out_ch: 2, 16 * num_out_ch: 1}.get(int(first_in))
    if scale is None:
        return None
    options = {"num_in_ch": num_out_ch, "num_out_ch": num_out_ch, "num_feat": int(num_feat),
               "num_block": len(indices(state_dict, "body.")),
               "num_grow_ch": int(state_dict["body.0.rdb1.conv1.weight"].shape[0]), "scale": scale}
    return ArchMatch(options, scale)
