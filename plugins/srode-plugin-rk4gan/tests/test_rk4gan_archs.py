"""Shapes and sizes of the generator, the SRGAN discriminator and the dual-attention RCAN."""

from __future__ import annotations

import pytest
import torch
from srode_rk4gan.discriminator_arch import SRGANDiscriminator, feature_size
from srode_rk4gan.generator_arch import RK4DualAttnRDN
from srode_rk4gan.rcan_arch import DualAttentionRCAN

from srode_plugins.errors import OptionError

TINY_G = {"num_feat": 8, "num_block": 2, "num_layer": 2, "growth_rate": 4, "se_reduction": 4}


def conv_params(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def rdn_param_count(g0: int, d: int, c: int, g: int, scale: int, channels: int = 3) -> int:
    """Parameters of a plain RDN (Zhang et al. 2018, without mean shift), counted from the paper's layer list."""
    shallow = conv_params(channels, g0, 3) + conv_params(g0, g0, 3)
    block = sum(conv_params(g0 + i * g, g, 3) for i in range(c)) + conv_params(g0 + c * g, g0, 1)
    fusion = conv_params(d * g0, g0, 1) + conv_params(g0, g0, 3)
    upsampler = {2: 1, 4: 2}[scale] * conv_params(g0, 4 * g0, 3)
    return shallow + d * block + fusion + upsampler + conv_params(g0, channels, 3)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_generator_output_is_scale_times_the_input(scale: int) -> None:
    net = RK4DualAttnRDN(upscale=scale, nonlocal_window=4, **TINY_G)

    assert net(torch.rand(2, 3, 7, 9)).shape == (2, 3, 7 * scale, 9 * scale)


@pytest.mark.parametrize("scale", [2, 4])
def test_euler_generator_without_attention_has_exactly_the_rdn_parameters(scale: int) -> None:
    net = RK4DualAttnRDN(
        upscale=scale,
        num_feat=16,
        num_block=3,
        num_layer=4,
        growth_rate=8,
        integrator="euler",
        coefficients="fixed",
        attention="none",
    )

    assert sum(p.numel() for p in net.parameters()) == rdn_param_count(16, 3, 4, 8, scale)


def test_rk4_shares_weights_so_only_the_tableau_adds_parameters() -> None:
    euler = RK4DualAttnRDN(integrator="euler", coefficients="per_entry", **TINY_G)
    rk4 = RK4DualAttnRDN(integrator="rk4", coefficients="per_entry", **TINY_G)
    blocks = TINY_G["num_block"]

    # per block: euler has 1 weight; rk4 has 3 offsets + 4 weights
    assert sum(p.numel() for p in rk4.parameters()) - sum(p.numel() for p in euler.parameters()) == blocks * 6


@pytest.mark.parametrize("scale", [5, 6])
def test_unsupported_scale_names_the_option(scale: int) -> None:
    with pytest.raises(OptionError, match=r"network_g.upscale.*got"):
        RK4DualAttnRDN(upscale=scale, **TINY_G)


@pytest.mark.parametrize("head", ["dense", "pooled"])
@pytest.mark.parametrize("size", [96, 128])
def test_discriminator_returns_one_logit_per_image(head: str, size: int) -> None:
    net = SRGANDiscriminator(num_feat=8, head=head, input_size=size)

    assert net(torch.rand(3, 3, size, size)).shape == (3, 1)


def test_dense_head_follows_srgan_sizes() -> None:
    net = SRGANDiscriminator(head="dense", input_size=96)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    batch_norms = [m for m in net.features if isinstance(m, torch.nn.BatchNorm2d)]

    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert len(batch_norms) == 7
    assert net.head[1].in_features == 512 * 6 * 6 and net.head[1].out_features == 1024
    assert feature_size(88) == 6 and feature_size(128) == 8


def test_pooled_head_accepts_any_crop_size() -> None:
    net = SRGANDiscriminator(num_feat=8, head="pooled")

    assert net(torch.rand(1, 3, 88, 60)).shape == (1, 1)


def test_dense_head_on_the_wrong_crop_size_says_which_options_to_change() -> None:
    net = SRGANDiscriminator(num_feat=8, head="dense", input_size=96)

    with pytest.raises(OptionError, match=r"network_d.input_size.*96x96.*128x128.*gt_size.*pooled"):
        net(torch.rand(1, 3, 128, 128))


def test_dual_attention_rcan_adds_nonlocal_before_channel_attention_in_every_block() -> None:
    net = DualAttentionRCAN(3, 3, num_feat=16, num_group=2, num_block=3, squeeze_factor=4, upscale=2, nonlocal_window=4)
    kinds = [[type(m).__name__ for m in rcab.rcab] for group in net.body for rcab in group.residual_group]

    assert kinds == [["Conv2d", "ReLU", "Conv2d", "NonLocalAttention", "ChannelAttention"]] * 6
    assert net(torch.rand(1, 3, 6, 10)).shape == (1, 3, 12, 20)
