"""NODESRNet structure: reference parameter counts, shapes, the time channel and option errors.

All networks are randomly initialised (no pretrained weights are used or needed).
"""

from __future__ import annotations

import pytest
import torch

from srode_plugins.api import OptionError

# srode_plugins.api patches basicsr, so it is imported first
# isort: split
from basicsr.archs.rrdbnet_arch import RRDBNet
from srode_node.archs import ConvODEFunc, NODESRNet, TimeConcatConv2d, count_parameters
from srode_node.solvers import FIXED_STEP_SOLVERS, integrate_fixed_step


def _conv3x3(cin: int, cout: int) -> int:
    return 9 * cin * cout + cout


def _closed_form_count(feat: int, layers: int, time_dependent: bool, augment: int, upconvs: int) -> int:
    state = feat + augment
    ode = layers * _conv3x3(state + int(time_dependent), state)
    return (_conv3x3(3, feat) + ode + _conv3x3(state, feat) + (upconvs + 1) * _conv3x3(feat, feat)
            + _conv3x3(feat, 3))


def test_augmented_time_dependent_seven_layer_net_has_the_papers_569251_parameters() -> None:
    net = NODESRNet(num_feat=64, ode_layers=7, time_dependent=True, augment_channels=16, upscale=4)
    assert count_parameters(net) == 569_251


def test_twenty_block_rrdb_has_the_papers_14539715_parameters() -> None:
    # basicsr's RRDBNet at x4: num_feat=64, num_grow_ch=32, num_block=20 ("15M" in the paper's Table 3)
    rrdb = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=20, num_grow_ch=32, scale=4)
    assert count_parameters(rrdb) == 14_539_715


@pytest.mark.parametrize(("layers", "time_dependent", "augment"), [(2, False, 0), (2, True, 0), (7, False, 16)])
def test_parameter_count_matches_the_closed_form(layers: int, time_dependent: bool, augment: int) -> None:
    net = NODESRNet(num_feat=64, ode_layers=layers, time_dependent=time_dependent, augment_channels=augment)
    assert count_parameters(net) == _closed_form_count(64, layers, time_dependent, augment, upconvs=2)


@pytest.mark.parametrize("upscale", [2, 3, 4])
def test_output_is_upscaled_and_augmentation_keeps_shapes(upscale: int) -> None:
    net = NODESRNet(num_feat=8, upscale=upscale, augment_channels=2, solver="fixed_euler", step_size=0.5)
    out = net(torch.rand(2, 3, 5, 6))
    assert out.shape == (2, 3, 5 * upscale, 6 * upscale)


def test_sequential_variant_sums_nfe_over_its_blocks() -> None:
    net = NODESRNet(num_feat=4, num_ode_blocks=3, solver="fixed_rk4", step_size=0.5)
    net(torch.rand(1, 3, 4, 4))
    assert net.nfe_forward == 3 * 2 * 4


def test_time_channel_is_a_constant_plane_equal_to_t() -> None:
    torch.manual_seed(0)
    conv = TimeConcatConv2d(3, 2)
    x = torch.rand(1, 3, 5, 5)
    t = torch.tensor(0.7)
    plane = torch.full((1, 1, 5, 5), 0.7)
    expected = torch.nn.functional.conv2d(torch.cat([plane, x], 1), conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(conv(t, x), expected)


def test_time_dependent_ode_integrates_dz_dt_equal_t_exactly() -> None:
    # Only the time input of a single 1-channel conv is on (centre tap = 1): f(t, z) = relu(t) = t on [0, 1],
    # so z(1) = z(0) + 1/2, which classic RK4 integrates exactly.
    func = ConvODEFunc(channels=1, layers=1, time_dependent=True)
    with torch.no_grad():
        func.convs[0].weight.zero_()
        func.convs[0].bias.zero_()
        func.convs[0].weight[0, 0, 1, 1] = 1.0
    z0 = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    func = func.double()
    z1 = integrate_fixed_step(func, z0.clone(), 0.0, 1.0, 0.5, FIXED_STEP_SOLVERS["fixed_rk4"])
    torch.testing.assert_close(z1, z0 + 0.5)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"solver": "rk45"}, "network_g.solver"),
        ({"backprop": "reverse"}, "network_g.backprop"),
        ({"solver": "fixed_rk4"}, "network_g.step_size"),
        ({"solver": "dopri5", "backprop": "anode"}, "network_g.solver"),
        ({"solver": "fixed_rk4", "step_size": 0.2, "backprop": "adjoint"}, "network_g.backprop"),
        ({"max_nfe": 0}, "network_g.max_nfe"),
        ({"upscale": 8}, "network_g.upscale"),
    ],
)
def test_invalid_options_name_the_key(options: dict, key: str) -> None:
    with pytest.raises(OptionError, match=key):
        NODESRNet(num_feat=4, **options)
