"""A generator state dict under the COGS181 report code's parameter names converts to RK4DualAttnRDN weights that
compute what the report's `RDN` computes.

The expected output comes from a second implementation written here from the report code's formulas
(GitHub Rabona17/Dual_attention_GAN_For_SISR, `model.py`); no reference weights are stored in the repository:
- RDN: sfe1 = conv3(x), sfe2 = conv3(sfe1); D blocks; gff = conv3(conv1(cat(block outputs))) + sfe1;
  (conv3 -> pixel shuffle 2) x 2; output conv3
- RDB: dense layers y <- cat(y, ReLU(conv3(y))); lff 1x1; with dual attention G = SE(non-local(lff(...))),
  step y + one_half * (G(y) + G(y + G(y)))
- Gaussian non-local: z = x + W(softmax_j(x_i . x_j) g(x_j)); SE: x * sigmoid(fc2(ReLU(fc1(mean_hw(x))))),
  fc1, fc2 bias-free Linear layers (C -> C/8 -> C)
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from srode_rk4gan.cogs181_checkpoint import (
    UnrecognisedCheckpoint,
    cogs181_network_options,
    convert_cogs181_state_dict,
)
from srode_rk4gan.generator_arch import RK4DualAttnRDN
from torch import Tensor

G0, D, C, G = 16, 2, 2, 8


def report_state_dict(dual_attention: bool = True) -> dict[str, Tensor]:
    """Random weights under the report's parameter names and shapes (x4, SE reduction 8)."""
    shapes: dict[str, tuple[int, ...]] = {"sfe1": (G0, 3, 3, 3), "sfe2": (G0, G0, 3, 3)}
    for d in range(D):
        for c in range(C):
            shapes[f"rdbs.{d}.layers.{c}.conv"] = (G, G0 + c * G, 3, 3)
        shapes[f"rdbs.{d}.lff"] = (G0, G0 + C * G, 1, 1)
        if dual_attention:
            for name, shape in {"g": (G0 // 2, G0), "W": (G0, G0 // 2), "theta": (G0 // 2, G0),
                                "phi": (G0 // 2, G0)}.items():
                shapes[f"rdbs.{d}.spatial_att.{name}"] = (*shape, 1, 1)
    shapes |= {"gff.0": (G0, G0 * D, 1, 1), "gff.1": (G0, G0, 3, 3), "upscale.0": (4 * G0, G0, 3, 3),
               "upscale.2": (4 * G0, G0, 3, 3), "output": (3, G0, 3, 3)}
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in shapes.items():
        state[f"{name}.weight"] = 0.2 * torch.randn(shape, generator=generator, dtype=torch.float64)
        state[f"{name}.bias"] = 0.02 * torch.randn(shape[0], generator=generator, dtype=torch.float64)
    for d in range(D):
        state[f"rdbs.{d}.one_half"] = torch.tensor([0.47], dtype=torch.float64)  # a trained value
        if dual_attention:
            state[f"rdbs.{d}.se.fc.0.weight"] = torch.randn(G0 // 8, G0, generator=generator, dtype=torch.float64)
            state[f"rdbs.{d}.se.fc.2.weight"] = torch.randn(G0, G0 // 8, generator=generator, dtype=torch.float64)
    return state


def report_forward(state: dict[str, Tensor], x: Tensor, dual_attention: bool = True) -> Tensor:
    def conv(name: str, inp: Tensor) -> Tensor:
        weight = state[f"{name}.weight"]
        return F.conv2d(inp, weight, state[f"{name}.bias"], padding=weight.shape[-1] // 2)

    def nonlocal_block(d: int, inp: Tensor) -> Tensor:
        b, c, h, w = inp.shape
        g_x = conv(f"rdbs.{d}.spatial_att.g", inp).view(b, c // 2, -1).permute(0, 2, 1)
        tokens = inp.view(b, c, -1)
        weights = torch.softmax(tokens.permute(0, 2, 1) @ tokens, dim=-1)
        y = (weights @ g_x).permute(0, 2, 1).reshape(b, c // 2, h, w)
        return conv(f"rdbs.{d}.spatial_att.W", y) + inp

    def squeeze_excite(d: int, inp: Tensor) -> Tensor:
        pooled = inp.mean(dim=(2, 3))
        hidden = F.relu(pooled @ state[f"rdbs.{d}.se.fc.0.weight"].T)
        scale = torch.sigmoid(hidden @ state[f"rdbs.{d}.se.fc.2.weight"].T)
        return inp * scale[:, :, None, None]

    def residual(d: int, y: Tensor) -> Tensor:
        features = y
        for c in range(C):
            features = torch.cat([features, F.relu(conv(f"rdbs.{d}.layers.{c}.conv", features))], dim=1)
        fused = conv(f"rdbs.{d}.lff", features)
        return squeeze_excite(d, nonlocal_block(d, fused)) if dual_attention else fused

    sfe1 = conv("sfe1", x)
    y = conv("sfe2", sfe1)
    outputs = []
    for d in range(D):
        if dual_attention:
            g_yn = residual(d, y)
            y = y + state[f"rdbs.{d}.one_half"] * (g_yn + residual(d, y + g_yn))
        else:
            y = y + residual(d, y)
        outputs.append(y)
    out = conv("gff.1", conv("gff.0", torch.cat(outputs, dim=1))) + sfe1
    out = F.pixel_shuffle(conv("upscale.2", F.pixel_shuffle(conv("upscale.0", out), 2)), 2)
    return conv("output", out)


@pytest.mark.parametrize("dual_attention", [True, False])
def test_report_checkpoint_converts_and_computes_what_the_report_computes(dual_attention: bool) -> None:
    state = report_state_dict(dual_attention)
    converted = convert_cogs181_state_dict(state)
    network = cogs181_network_options(converted)
    assert (network["num_feat"], network["num_block"], network["num_layer"], network["growth_rate"],
            network["upscale"]) == (G0, D, C, G, 4)
    assert network["integrator"] == ("rk2" if dual_attention else "euler")
    network.pop("type")
    net = RK4DualAttnRDN(**network).double().eval()
    net.load_state_dict(converted, strict=True)
    x = torch.rand(1, 3, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), report_forward(state, x, dual_attention), rtol=0, atol=1e-10)


def test_other_checkpoints_are_rejected_naming_the_unknown_keys() -> None:
    with pytest.raises(UnrecognisedCheckpoint, match="net.0.weight"):
        convert_cogs181_state_dict({"sfe1.weight": torch.zeros(1), "net.0.weight": torch.zeros(1)})
