"""Recognise RK4DualAttnRDN weights by their keys and shapes (entry point `srode.detectors`)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from srode_plugins.api import ArchMatch, indices, pixel_shuffle_scale

_INTEGRATORS = {1: "euler", 2: "rk2", 4: "rk4"}  # stage weights b_1..b_s -> the integrator with s stages


def _integrator(state_dict: Mapping[str, Tensor]) -> tuple[str, str]:
    """(integrator, coefficients): stored tableaus give the stage count; the tied scalars name the report's form."""
    weights = state_dict.get("blocks.0.stage_weights")
    if weights is not None:
        # 'per_entry' and 'fixed' compute the same forward from the stored tableau; per_entry keeps it trainable.
        return _INTEGRATORS[weights.numel()], "per_entry"
    if "blocks.0.one_sixth" in state_dict:
        return "rk4", "cogs181"
    if "blocks.0.one_half" in state_dict:
        return "rk2", "cogs181"
    return "euler", "cogs181"


def _attention(state_dict: Mapping[str, Tensor]) -> dict[str, object]:
    prefix = "blocks.0.residual.attention."
    nonlocal_first = f"{prefix}0.g.weight" in state_dict
    squeeze = f"{prefix}{1 if nonlocal_first else 0}.attention.1.weight"
    kind = {(True, True): "dual", (True, False): "spatial", (False, True): "channel", (False, False): "none"}[
        (nonlocal_first, squeeze in state_dict)]
    options: dict[str, object] = {"attention": kind}
    if nonlocal_first:
        options["nonlocal_kind"] = "embedded" if f"{prefix}0.theta.weight" in state_dict else "gaussian"
    if squeeze in state_dict:
        num_feat, hidden = state_dict[squeeze].shape[1], state_dict[squeeze].shape[0]
        options["se_reduction"] = int(num_feat // hidden)
    return options


def detect_rk4_dual_attn_rdn(state_dict: Mapping[str, Tensor]) -> ArchMatch | None:
    """RK4DualAttnRDN constructor arguments read from `state_dict`, or None for other archs.

    Non-local window and implementation leave no trace in the weights and keep their defaults.
    """
    required = ("shallow_conv1.weight", "shallow_conv2.weight", "global_fusion.0.weight", "upsample.0.weight",
                "conv_last.weight", "blocks.0.residual.dense_layers.0.0.weight",
                "blocks.0.residual.local_fusion.weight")
    if not all(key in state_dict for key in required):
        return None
    num_feat, num_in_ch = state_dict["shallow_conv1.weight"].shape[:2]
    scale = pixel_shuffle_scale(state_dict, "upsample.", int(num_feat))
    if scale is None:
        return None
    integrator, coefficients = _integrator(state_dict)
    options = {
        "num_in_ch": int(num_in_ch),
        "num_out_ch": int(state_dict["conv_last.weight"].shape[0]),
        "upscale": scale,
        "num_feat": int(num_feat),
        "num_block": len(indices(state_dict, "blocks.")),
        "num_layer": len(indices(state_dict, "blocks.0.residual.dense_layers.")),
        "growth_rate": int(state_dict["blocks.0.residual.dense_layers.0.0.weight"].shape[0]),
        "integrator": integrator,
        "coefficients": coefficients,
        **_attention(state_dict),
    }
    return ArchMatch(options, scale)
