"""The plugin's archs and its demo option file pass the core's conformance kit (srode_plugins.testing)."""

from __future__ import annotations

from importlib import resources

import pytest

from srode_plugins.testing import check_arch, check_model

TINY_G = {"num_feat": 8, "num_block": 2, "num_layer": 2, "growth_rate": 4, "se_reduction": 4}


@pytest.mark.parametrize("integrator", ["euler", "rk2", "rk4"])
def test_generator_keeps_the_arch_contract(integrator: str) -> None:
    check_arch("RK4DualAttnRDN", {**TINY_G, "integrator": integrator, "nonlocal_window": 8}, scales=(2, 3, 4))


@pytest.mark.parametrize(("head", "size"), [("dense", 96), ("pooled", 40)])
def test_discriminator_keeps_the_arch_contract(head: str, size: int) -> None:
    check_arch(
        "SRGANDiscriminator",
        {"num_feat": 8, "head": head, "input_size": size},
        scale_key=None,
        scales=(1,),
        lr_size=(size, size),
        expected_shape=lambda shape, scale: (shape[0], 1),
    )


def test_dual_attention_rcan_keeps_the_arch_contract() -> None:
    opt = {
        "num_in_ch": 3,
        "num_out_ch": 3,
        "num_feat": 16,
        "num_group": 1,
        "num_block": 2,
        "squeeze_factor": 4,
        "img_range": 1.0,
        "nonlocal_window": 8,
    }
    check_arch("DualAttentionRCAN", opt, scales=(2, 4))


@pytest.mark.slow
def test_demo_option_trains_validates_reloads_and_resumes(tmp_path) -> None:
    option = resources.files("srode_rk4gan.options") / "rk4_dualattn_gan_demo.yml"
    check_model(str(option), iters=2, root=tmp_path)
