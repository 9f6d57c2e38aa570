"""The COGS181 report's generator checkpoint (GitHub Rabona17/Dual_attention_GAN_For_SISR, `model.py` class `RDN`,
e.g. its `epochs/dual_att_rdn_netG_epoch_4_150.pth`) as RK4DualAttnRDN weights.

The report's keys: `sfe1`, `sfe2`, `rdbs.<d>.layers.<c>.conv`, `rdbs.<d>.lff`, `rdbs.<d>.one_half`, the dual
attention `rdbs.<d>.spatial_att.{g, W, theta, phi}` and `rdbs.<d>.se.fc.{0, 2}` (bias-free Linear layers),
`gff.{0, 1}`, `upscale.<k>`, `output`. Its Gaussian non-local never uses theta and phi, so they are dropped;
the SE Linear weights become BasicSR's 1x1 convs with zero biases (the same function).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from srode_plugins.api import SrodeError

COGS181_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"sfe1\.(weight|bias)", r"shallow_conv1.\1"),
        (r"sfe2\.(weight|bias)", r"shallow_conv2.\1"),
        (r"rdbs\.(\d+)\.layers\.(\d+)\.conv\.(weight|bias)", r"blocks.\1.residual.dense_layers.\2.0.\3"),
        (r"rdbs\.(\d+)\.lff\.(weight|bias)", r"blocks.\1.residual.local_fusion.\2"),
        (r"rdbs\.(\d+)\.one_half", r"blocks.\1.one_half"),
        (r"rdbs\.(\d+)\.spatial_att\.g\.(weight|bias)", r"blocks.\1.residual.attention.0.g.\2"),
        (r"rdbs\.(\d+)\.spatial_att\.W\.(weight|bias)", r"blocks.\1.residual.attention.0.w_z.\2"),
        (r"rdbs\.(\d+)\.se\.fc\.0\.weight", r"blocks.\1.residual.attention.1.attention.1.weight"),
        (r"rdbs\.(\d+)\.se\.fc\.2\.weight", r"blocks.\1.residual.attention.1.attention.3.weight"),
        (r"gff\.([01])\.(weight|bias)", r"global_fusion.\1.\2"),
        (r"upscale\.(\d+)\.(weight|bias)", r"upsample.\1.\2"),
        (r"output\.(weight|bias)", r"conv_last.\1"),
    )
)
# defined by the report's code but not used by its forward pass
COGS181_UNUSED = re.compile(r"rdbs\.\d+\.spatial_att\.(theta|phi)\.(weight|bias)")


class UnrecognisedCheckpoint(SrodeError):
    """A checkpoint handed to the converter holds keys it does not know (another architecture)."""


def convert_cogs181_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The report's generator state dict with RK4DualAttnRDN's key names (SE layers reshaped to 1x1 convs)."""
    state = {key.removeprefix("module."): value for key, value in state.items()}  # DataParallel saves
    dual_attention = "rdbs.0.se.fc.0.weight" in state
    converted: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if COGS181_UNUSED.fullmatch(key) or (not dual_attention and key.endswith(".one_half")):
            continue  # without attention the report's block is y + G(y): its one_half is never used
        new_key = next((pattern.sub(repl, key) for pattern, repl in COGS181_RENAMES if pattern.fullmatch(key)), None)
        if new_key is None:
            unknown.append(key)
        elif ".attention.1.attention." in new_key:
            converted[new_key] = value[:, :, None, None]
            converted[new_key.removesuffix("weight") + "bias"] = torch.zeros_like(value[:, 0])
        else:
            converted[new_key] = value
    if unknown or "shallow_conv1.weight" not in converted:
        raise UnrecognisedCheckpoint(
            f"not a COGS181 RDN generator: unknown keys {unknown[:5]} (of {len(unknown)}); the converter reads "
            "the state dict of the report code's RDN (keys sfe1, rdbs.<d>..., gff, upscale, output)"
        )
    return converted


def cogs181_network_options(converted: Mapping[str, Tensor]) -> dict[str, Any]:
    """`network_g` of the RK4DualAttnRDN that holds `converted` and computes what the report's code computes."""
    num_feat, num_in_ch = converted["shallow_conv1.weight"].shape[:2]
    blocks = {int(key.split(".")[1]) for key in converted if key.startswith("blocks.")}
    layers = {int(key.split(".")[4]) for key in converted if key.startswith("blocks.0.residual.dense_layers.")}
    upsample_convs = [key for key in converted if re.fullmatch(r"upsample\.\d+\.weight", key)]
    upscale = 4 if len(upsample_convs) == 2 else math.isqrt(converted["upsample.0.weight"].shape[0] // num_feat)
    squeeze = converted.get("blocks.0.residual.attention.1.attention.1.weight")
    return {
        "type": "RK4DualAttnRDN", "num_in_ch": int(num_in_ch),
        "num_out_ch": int(converted["conv_last.weight"].shape[0]), "upscale": upscale, "num_feat": int(num_feat),
        "num_block": len(blocks), "num_layer": len(layers),
        "growth_rate": int(converted["blocks.0.residual.dense_layers.0.0.weight"].shape[0]),
        "integrator": "rk2" if squeeze is not None else "euler", "coefficients": "cogs181",
        "attention": "dual" if squeeze is not None else "none", "nonlocal_kind": "gaussian", "nonlocal_window": None,
        "se_reduction": int(num_feat) // int(squeeze.shape[0]) if squeeze is not None else 8,
    }
