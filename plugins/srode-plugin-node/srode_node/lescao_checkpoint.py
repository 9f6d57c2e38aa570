"""Generators trained with Le Scao's code (GitHub TevenLeScao/BasicSR, `RRDBNet` with `differential` standard,
sequential or augmented) as NODESRNet weights: the keys renamed, the network options read from the shapes.

The fork saves a bare state dict. Its ODE convs are `conv_trunk[.<block>].odefunc.convs.<i>` (time-dependent
standard convs wrap theirs in `._layer`); the upsampling convs are `upconv1`, `upconv2`, `HRconv`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from srode_node.errors import UnrecognisedCheckpoint

LESCAO_OUTER_CONVS = {"conv_first": "conv_first", "trunk_conv": "trunk_conv", "upconv1": "upconvs.0",
                      "upconv2": "upconvs.1", "HRconv": "conv_hr", "conv_last": "conv_last"}
LESCAO_ODE_CONV = re.compile(r"conv_trunk\.(?:(\d+)\.)?odefunc\.convs\.(\d+)\.(?:_layer\.)?(weight|bias)")


def convert_lescao_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The fork's generator state dict with NODESRNet's key names (same tensors, no copy)."""
    converted: dict[str, Tensor] = {}
    unknown = []
    for raw_key, value in state.items():
        key = raw_key.removeprefix("module.")
        name, _, leaf = key.rpartition(".")
        match = LESCAO_ODE_CONV.fullmatch(key)
        if name in LESCAO_OUTER_CONVS and leaf in ("weight", "bias"):
            converted[f"{LESCAO_OUTER_CONVS[name]}.{leaf}"] = value
        elif match:
            block, conv, leaf = match.groups()
            converted[f"ode_blocks.{block or 0}.odefunc.func.convs.{conv}.{leaf}"] = value
        else:
            unknown.append(raw_key)
    if unknown or "conv_first.weight" not in converted:
        raise UnrecognisedCheckpoint(
            f"not a Le Scao NODE generator: unknown keys {unknown[:5]} (of {len(unknown)}). The converter reads "
            "RRDBNet checkpoints with differential standard, sequential or augmented; RRDB blocks and the "
            "checkpointed (ANODE) trunk are not Neural-ODE SR nets of this form"
        )
    return converted


def lescao_network_options(converted: Mapping[str, Tensor]) -> dict[str, Any]:
    """`network_g` of the NODESRNet that holds `converted` (output of `convert_lescao_state_dict`), with the
    fork's solver settings: dopri5 at 1e-4 (standard, sequential) or 1e-3 (augmented)."""
    num_feat, num_in_ch = converted["conv_first.weight"].shape[:2]
    state_channels = converted["trunk_conv.weight"].shape[1]
    ode_keys = [key.split(".") for key in converted if key.startswith("ode_blocks.") and key.endswith(".weight")]
    num_blocks = 1 + max(int(parts[1]) for parts in ode_keys)
    layers = 1 + max(int(parts[5]) for parts in ode_keys)
    time_dependent = converted["ode_blocks.0.odefunc.func.convs.0.weight"].shape[1] == state_channels + 1
    augment = state_channels - num_feat
    tolerance = 1e-3 if augment else 1e-4
    return {"type": "NODESRNet", "num_in_ch": int(num_in_ch), "num_out_ch": int(converted["conv_last.weight"].shape[0]),
            "num_feat": int(num_feat), "upscale": 4, "ode_layers": layers, "num_ode_blocks": num_blocks,
            "time_dependent": bool(time_dependent), "augment_channels": int(augment), "solver": "dopri5",
            "rtol": tolerance, "atol": tolerance, "state_relu": "lescao"}
