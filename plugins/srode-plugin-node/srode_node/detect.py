"""Recognise NODESRNet weights by their keys and shapes (entry point `srode.detectors`)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from srode_plugins.api import ArchMatch, indices


def detect_nodesrnet(state_dict: Mapping[str, Tensor]) -> ArchMatch | None:
    """NODESRNet constructor arguments read from `state_dict`, or None for other archs.

    The weights fix the widths, depths, augmentation, time dependence and x4 (two upsampling convs); x2 and x3
    share every shape, so their scale comes from the user. Solver settings leave no trace and keep the defaults.
    """
    required = ("conv_first.weight", "trunk_conv.weight", "upconvs.0.weight", "conv_hr.weight", "conv_last.weight",
                "ode_blocks.0.odefunc.func.convs.0.weight")
    if not all(key in state_dict for key in required):
        return None
    num_feat, num_in_ch = state_dict["conv_first.weight"].shape[:2]
    state_channels = state_dict["trunk_conv.weight"].shape[1]
    ode_in_channels = state_dict["ode_blocks.0.odefunc.func.convs.0.weight"].shape[1]
    options = {
        "num_in_ch": int(num_in_ch),
        "num_out_ch": int(state_dict["conv_last.weight"].shape[0]),
        "num_feat": int(num_feat),
        "num_ode_blocks": len(indices(state_dict, "ode_blocks.")),
        "ode_layers": len(indices(state_dict, "ode_blocks.0.odefunc.func.convs.")),
        "augment_channels": int(state_channels - num_feat),
        "time_dependent": bool(ode_in_channels == state_channels + 1),
    }
    if len(indices(state_dict, "upconvs.")) == 2:
        return ArchMatch({**options, "upscale": 4}, 4)
    return ArchMatch(options, None, scale_option="upscale")
