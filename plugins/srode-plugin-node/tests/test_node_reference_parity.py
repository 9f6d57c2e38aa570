"""NODESRNet computes what Le Scao's code (GitHub TevenLeScao/BasicSR) computes.

The expected values come from a second implementation written here from the fork's formulas, not from srode:
- standard NODE (`torchdiffeq/_impl/conv.py`, `ODEfunc`, normalization off):
  f(t, z) = ReLU(conv_L(... ReLU(conv_1(ReLU(z)))))
- augmented NODE (`torchdiffeq/_impl/augmented_conv.py`, `ConvODEFunc`):
  f(t, z) = ReLU(conv_L(... ReLU(conv_1(z)))), no ReLU on the state; F // 4 zero channels appended before the solve
- time-dependent convs see the channel stack [t, state] (time first)
- `RRDBNet_arch.py`: conv_first -> ODE over [0, 1] (dopri5) -> trunk_conv -> 2 x (bicubic x2 -> conv -> LeakyReLU 0.2)
  -> HRconv -> LeakyReLU 0.2 -> conv_last, + bicubic x4 of the input
"""

from __future__ import annotations

from pathlib import Path

import pytest
import srode_node
import torch
import torch.nn.functional as F  # noqa: N812
import torchdiffeq
from srode_node import cli as node_cli
from srode_node.errors import UnrecognisedCheckpoint
from srode_node.lescao_checkpoint import convert_lescao_state_dict, lescao_network_options
from torch import Tensor

from srode_plugins import api
from srode_plugins import options as options_mod

OPTIONS_DIR = Path(srode_node.__file__).parent / "options"
TINY = {"num_feat": 8, "upscale": 4, "ode_layers": 2, "solver": "dopri5", "rtol": 1e-3, "atol": 1e-3}


def reference_vector_field(weights: list[tuple[Tensor, Tensor]], time_dependent: bool, augmented: bool):
    def field(t: Tensor, z: Tensor) -> Tensor:
        out = z if augmented else F.relu(z)
        for weight, bias in weights:
            if time_dependent:
                out = torch.cat([torch.ones_like(out[:, :1]) * t, out], dim=1)
            out = F.relu(F.conv2d(out, weight, bias, padding=1))
        return out

    return field


# the fork's module names (RRDBNet_arch.py) -> srode's, for running the reference on srode's own weights
SRODE_NAMES = {"conv_first": "conv_first", "trunk_conv": "trunk_conv", "upconv1": "upconvs.0",
               "upconv2": "upconvs.1", "HRconv": "conv_hr", "conv_last": "conv_last",
               "ode": "ode_blocks.0.odefunc.func.convs.{}"}


def fork_names(time_dependent: bool, augmented: bool) -> dict[str, str]:
    """The fork's own keys: a time-dependent standard conv (ConcatConv2d) keeps its conv in `_layer`."""
    layer = "._layer" if time_dependent and not augmented else ""
    return {name: name for name in ("conv_first", "trunk_conv", "upconv1", "upconv2", "HRconv", "conv_last")} | {
        "ode": "conv_trunk.odefunc.convs.{}" + layer}


def reference_forward(state: dict[str, Tensor], x: Tensor, *, layers: int, augment: int, time_dependent: bool,
                      rtol: float, names: dict[str, str] = SRODE_NAMES) -> Tensor:
    def conv(name: str, inp: Tensor) -> Tensor:
        return F.conv2d(inp, state[f"{names[name]}.weight"], state[f"{names[name]}.bias"], padding=1)

    def up2(inp: Tensor) -> Tensor:
        return F.interpolate(inp, scale_factor=2, mode="bicubic", align_corners=False)

    fea = conv("conv_first", x)
    if augment:
        fea = torch.cat([fea, fea.new_zeros(fea.shape[0], augment, *fea.shape[2:])], dim=1)
    ode = [names["ode"].format(i) for i in range(layers)]
    weights = [(state[f"{prefix}.weight"], state[f"{prefix}.bias"]) for prefix in ode]
    field = reference_vector_field(weights, time_dependent, augmented=augment > 0)
    times = torch.tensor([0.0, 1.0], dtype=x.dtype)
    trunk = conv("trunk_conv", torchdiffeq.odeint(field, fea, times, rtol=rtol, atol=rtol, method="dopri5")[1])
    trunk = F.leaky_relu(conv("upconv1", up2(trunk)), 0.2)
    trunk = F.leaky_relu(conv("upconv2", up2(trunk)), 0.2)
    out = conv("conv_last", F.leaky_relu(conv("HRconv", trunk), 0.2))
    return out + F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)


def fork_state_dict(num_feat: int, layers: int, augment: int, time_dependent: bool) -> dict[str, Tensor]:
    """Random weights under the fork's parameter names and shapes (RRDBNet, differential standard/augmented)."""
    channels = num_feat + augment
    shapes = {"conv_first": (num_feat, 3), "trunk_conv": (num_feat, channels), "upconv1": (num_feat, num_feat),
              "upconv2": (num_feat, num_feat), "HRconv": (num_feat, num_feat), "conv_last": (3, num_feat)}
    names = fork_names(time_dependent, augmented=augment > 0)
    shapes |= {names["ode"].format(i): (channels, channels + time_dependent) for i in range(layers)}
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, (out_ch, in_ch) in shapes.items():
        state[f"{name}.weight"] = 0.1 * torch.randn(out_ch, in_ch, 3, 3, generator=generator, dtype=torch.float64)
        state[f"{name}.bias"] = 0.01 * torch.randn(out_ch, generator=generator, dtype=torch.float64)
    return state


def _net(**kwargs):
    return api.get_component("archs", "NODESRNet")(**kwargs).double().eval()


@pytest.mark.parametrize("time_dependent", [False, True])
@pytest.mark.parametrize("augment", [0, 2])
def test_default_network_equals_the_forks_standard_and_augmented_node(augment: int, time_dependent: bool) -> None:
    torch.manual_seed(0)
    net = _net(**TINY, augment_channels=augment, time_dependent=time_dependent)
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        expected = reference_forward(net.state_dict(), x, layers=2, augment=augment, time_dependent=time_dependent,
                                     rtol=1e-3)
        assert torch.allclose(net(x), expected, rtol=0, atol=1e-12)


def test_state_relu_always_differs_from_the_fork_on_the_augmented_node() -> None:
    torch.manual_seed(0)
    lescao = _net(**TINY, augment_channels=2, time_dependent=True)
    always = _net(**TINY, augment_channels=2, time_dependent=True, state_relu="always")
    always.load_state_dict(lescao.state_dict())
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        assert (always(x) - lescao(x)).abs().max() > 1e-6


@pytest.mark.parametrize("stem", ["NODE_T1_AugNODE_time_discrete_x4_BSD", "NODE_T2_AugNODE_time_7L_x4_DIV2K",
                                  "NODE_T1_NODE_time_discrete_x4_BSD"])
def test_paper_option_files_compute_what_the_fork_computes(stem: str) -> None:
    network = dict(options_mod.load(OPTIONS_DIR / f"{stem}.yml").opt["network_g"])
    network.pop("type")
    network["max_nfe"] = None
    torch.manual_seed(0)
    net = _net(**network)
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        expected = reference_forward(net.state_dict(), x, layers=network["ode_layers"],
                                     augment=network["augment_channels"], time_dependent=network["time_dependent"],
                                     rtol=network["rtol"])
        assert torch.allclose(net(x), expected, rtol=0, atol=1e-12)


def test_unknown_state_relu_names_the_key() -> None:
    with pytest.raises(api.OptionError, match="network_g.state_relu"):
        _net(**TINY, state_relu="sometimes")


@pytest.mark.parametrize(("augment", "time_dependent"), [(0, False), (0, True), (2, True)])
def test_fork_checkpoint_converts_and_computes_what_the_fork_computes(augment: int, time_dependent: bool) -> None:
    fork_state = fork_state_dict(8, 2, augment, time_dependent)
    converted = convert_lescao_state_dict(fork_state)
    network = lescao_network_options(converted)
    assert (network["num_feat"], network["ode_layers"], network["augment_channels"], network["time_dependent"],
            network["rtol"]) == (8, 2, augment, time_dependent, 1e-3 if augment else 1e-4)
    net = api.get_component("archs", network.pop("type"))(**network).double().eval()
    net.load_state_dict(converted, strict=True)
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        expected = reference_forward(fork_state, x, layers=2, augment=augment, time_dependent=time_dependent,
                                     rtol=network["rtol"], names=fork_names(time_dependent, augment > 0))
        assert torch.allclose(net(x), expected, rtol=0, atol=1e-12)


def test_fork_sequential_checkpoint_maps_each_block() -> None:
    state = {f"conv_trunk.{block}.odefunc.convs.{conv}.{leaf}": torch.zeros(1)
             for block in range(3) for conv in range(2) for leaf in ("weight", "bias")}
    state["conv_first.weight"] = torch.zeros(1)
    converted = convert_lescao_state_dict(state)
    assert "ode_blocks.2.odefunc.func.convs.1.bias" in converted


def test_rrdb_checkpoint_is_rejected_with_the_reason() -> None:
    rrdb = {"conv_first.weight": torch.zeros(1), "conv_trunk.0.RDB1.conv1.weight": torch.zeros(1)}
    with pytest.raises(UnrecognisedCheckpoint, match="conv_trunk.0.RDB1.conv1.weight"):
        convert_lescao_state_dict(rrdb)


def test_convert_command_writes_params_and_prints_the_network(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.save(fork_state_dict(8, 2, 2, True), tmp_path / "5_G.pth")
    assert node_cli.main(["convert-lescao", str(tmp_path / "5_G.pth"), "--out", str(tmp_path / "net.pth")]) == 0
    saved = torch.load(tmp_path / "net.pth", weights_only=True)
    assert "ode_blocks.0.odefunc.func.convs.1.weight" in saved["params"]
    assert "augment_channels: 2" in capsys.readouterr().out
