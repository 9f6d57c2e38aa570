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


def reference_forward(state: dict[str, Tensor], x: Tensor, *, layers: int, augment: int, time_dependent: bool,
                      rtol: float) -> Tensor:
    def conv(name: str, inp: Tensor) -> Tensor:
        return F.conv2d(inp, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)

    def up2(inp: Tensor) -> Tensor:
        return F.interpolate(inp, scale_factor=2, mode="bicubic", align_corners=False)

    fea = conv("conv_first", x)
    if augment:
        fea = torch.cat([fea, fea.new_zeros(fea.shape[0], augment, *fea.shape[2:])], dim=1)
    prefix = "ode_blocks.0.odefunc.func.convs"
    weights = [(state[f"{prefix}.{i}.weight"], state[f"{prefix}.{i}.bias"]) for i in range(layers)]
    field = reference_vector_field(weights, time_dependent, augmented=augment > 0)
    times = torch.tensor([0.0, 1.0], dtype=x.dtype)
    trunk = conv("trunk_conv", torchdiffeq.odeint(field, fea, times, rtol=rtol, atol=rtol, method="dopri5")[1])
    trunk = F.leaky_relu(conv("upconvs.0", up2(trunk)), 0.2)
    trunk = F.leaky_relu(conv("upconvs.1", up2(trunk)), 0.2)
    out = conv("conv_last", F.leaky_relu(conv("conv_hr", trunk), 0.2))
    return out + F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)


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
