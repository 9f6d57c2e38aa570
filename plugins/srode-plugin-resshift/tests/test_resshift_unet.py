"""UNetModelSwin: official x4 checkpoint layout, numerical agreement with the official code, shapes and errors.

Every network here is randomly (or deterministically) initialised; no pretrained weights are used.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from srode_resshift.reference import fill_deterministic, read_reference_data
from srode_resshift.unet import (
    RESSHIFT_X4_UNET_CONFIG,
    UNetModelSwin,
    load_official_checkpoint,
    shifted_window_mask,
    timestep_embedding,
)

from srode_plugins import api

#: The configuration recommended for CPU tests and the demo (pixel space, 4x LR conditioning upsampled inside).
TINY_CONFIG: dict[str, object] = {
    "image_size": 64,
    "in_channels": 3,
    "model_channels": 32,
    "out_channels": 3,
    "num_res_blocks": 1,
    "attention_resolutions": [32],
    "channel_mult": [1, 2],
    "num_head_channels": 16,
    "use_scale_shift_norm": True,
    "swin_depth": 2,
    "swin_embed_dim": 32,
    "window_size": 8,
    "mlp_ratio": 2.0,
    "cond_lq": True,
}


def seeded_normal(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def manifest() -> dict:
    return read_reference_data("resshift_x4_unet_manifest.json")


@pytest.fixture(scope="module")
def full_size_unet() -> UNetModelSwin:
    with torch.device("meta"):
        return UNetModelSwin(**RESSHIFT_X4_UNET_CONFIG)


def test_full_size_unet_has_exactly_the_official_x4_state_dict_keys_shapes_and_dtypes(full_size_unet, manifest):
    ours = {
        key: (list(value.shape), str(value.dtype).removeprefix("torch."))
        for key, value in full_size_unet.state_dict().items()
    }
    official = {key: (entry["shape"], entry["dtype"]) for key, entry in manifest["state_dict"].items()}
    assert len(official) == 564
    assert ours == official


def test_full_size_unet_has_the_official_118_59m_parameters(full_size_unet, manifest):
    count = sum(parameter.numel() for parameter in full_size_unet.parameters())
    assert count == manifest["num_parameters"] == 118_593_583
    assert round(count / 1e6, 2) == 118.59


def test_state_dict_made_from_the_manifest_loads_strictly_into_the_full_size_unet(full_size_unet, manifest):
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    state = {
        f"module.{key}": torch.zeros(entry["shape"], dtype=dtypes[entry["dtype"]], device="meta")
        for key, entry in manifest["state_dict"].items()
    }
    result = full_size_unet.load_state_dict(api.unwrap_state_dict(state), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_a_missing_or_extra_key_is_refused_by_the_strict_load(full_size_unet, manifest):
    state = {key: torch.zeros(entry["shape"], device="meta") for key, entry in manifest["state_dict"].items()}
    state.pop("out.2.weight")
    with pytest.raises(RuntimeError, match="out.2.weight"):
        full_size_unet.load_state_dict(state, strict=True, assign=True)


@pytest.mark.parametrize("case", [0, 1], ids=["16x16-training-size", "16x24-recomputed-mask"])
def test_tiny_unet_reproduces_the_official_code_outputs(case):
    reference = read_reference_data("resshift_tiny_reference_outputs.json")
    config = {k: v for k, v in reference["unet_config"].items() if k not in ("dims", "use_fp16", "resblock_updown")}
    net = UNetModelSwin(**config, shift_mask="resshift").eval()
    fill_deterministic(net)
    entry = reference["unet"][case]
    height, width = entry["size"]
    with torch.no_grad():
        out = net(
            seeded_normal(entry["x_seed"], 2, 3, height, width),
            torch.tensor(entry["timesteps"]),
            seeded_normal(entry["lq_seed"], 2, 3, height, width),
        )
    expected = torch.tensor(entry["output"]).view(2, 3, height, width)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-5)


def test_tiny_unet_maps_pixel_input_and_4x_smaller_lq_to_the_input_shape():
    torch.manual_seed(0)
    net = UNetModelSwin(**TINY_CONFIG).eval()
    x, lq = torch.randn(2, 3, 32, 48), torch.rand(2, 3, 8, 12) * 2 - 1
    with torch.no_grad():
        out = net(x, torch.tensor([0.0, 7.5]), lq)
    assert out.shape == (2, 3, 32, 48)
    assert torch.isfinite(out).all()


def test_a_small_lq_is_equivalent_to_its_bicubic_upsampling():
    torch.manual_seed(0)
    net = UNetModelSwin(**TINY_CONFIG).eval()
    fill_deterministic(net)
    x, lq, t = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 4, 4), torch.tensor([3.0])
    with torch.no_grad():
        from_small = net(x, t, lq)
        from_upsampled = net(x, t, F.interpolate(lq, scale_factor=4, mode="bicubic"))
    torch.testing.assert_close(from_small, from_upsampled)


def test_output_depends_on_timestep_and_on_lq():
    torch.manual_seed(0)
    net = UNetModelSwin(**TINY_CONFIG).eval()
    fill_deterministic(net)
    x, lq = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        base = net(x, torch.tensor([1.0]), lq)
        other_time = net(x, torch.tensor([9.0]), lq)
        other_lq = net(x, torch.tensor([1.0]), lq + 1)
    assert (base - other_time).abs().max() > 1e-3
    assert (base - other_lq).abs().max() > 1e-3


def test_official_wrapped_and_prefixed_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    source = UNetModelSwin(**TINY_CONFIG)
    fill_deterministic(source)
    path = tmp_path / "ema.pth"
    torch.save({"state_dict": {f"_orig_mod.{k}": v for k, v in source.state_dict().items()}}, path)
    target = UNetModelSwin(**TINY_CONFIG)
    load_official_checkpoint(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_size_multiple_covers_downsampling_and_swin_windows():
    net = UNetModelSwin(**TINY_CONFIG)
    # two levels (factor 2) and a window of 8 at level 1 (16 input pixels) -> 16
    assert net.size_multiple == 16
    with torch.no_grad(), pytest.raises(ValueError, match="size_multiple"):
        net(torch.randn(1, 3, 24, 24), torch.tensor([1.0]), torch.randn(1, 3, 6, 6))


def test_missing_or_unexpected_lq_is_a_clear_error():
    net = UNetModelSwin(**TINY_CONFIG)
    with pytest.raises(ValueError, match="cond_lq=True"):
        net(torch.randn(1, 3, 16, 16), torch.tensor([1.0]))
    unconditional = UNetModelSwin(**{**TINY_CONFIG, "cond_lq": False})
    assert unconditional.input_blocks[0][0].in_channels == 3
    with pytest.raises(ValueError, match="cond_lq=False"):
        unconditional(torch.randn(1, 3, 16, 16), torch.tensor([1.0]), torch.randn(1, 3, 4, 4))


def test_inconsistent_configuration_names_the_argument():
    with pytest.raises(ValueError, match="num_res_blocks"):
        UNetModelSwin(**{**TINY_CONFIG, "num_res_blocks": [1, 1, 1]})
    with pytest.raises(ValueError, match="num_head_channels=24"):
        UNetModelSwin(**{**TINY_CONFIG, "num_head_channels": 24})


def test_lq_larger_than_the_latent_goes_through_strided_convolutions():
    net = UNetModelSwin(**{**TINY_CONFIG, "image_size": 16, "lq_size": 32})
    assert net.input_blocks[0][0].in_channels == 3 + 32  # one octave: 16 -> 32 feature channels
    with torch.no_grad():
        out = net(torch.randn(1, 3, 16, 16), torch.tensor([2.0]), torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 3, 16, 16)


def test_timestep_embedding_is_cos_then_sin_of_geometric_frequencies():
    t = torch.tensor([0.0, 2.5, 14.0])
    emb = timestep_embedding(t, 8)
    freqs = torch.tensor([10000.0 ** (-k / 4) for k in range(4)])
    torch.testing.assert_close(emb, torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], 1))
    assert timestep_embedding(t, 7).shape == (3, 7)


def test_swin_mask_lets_tokens_attend_only_to_tokens_that_were_neighbours_before_the_shift():
    size, window, shift = 16, 8, 4
    mask = shifted_window_mask(size, size, window, shift, "swin")
    # A token at rolled position p came from (p + shift) mod size; it wrapped around iff p + shift >= size.
    wrapped = torch.arange(size) + shift >= size
    row_wrap = wrapped[:, None].expand(size, size)
    col_wrap = wrapped[None, :].expand(size, size)
    blocks = size // window
    for index in range(blocks * blocks):
        r, c = divmod(index, blocks)
        rows = row_wrap[r * window : (r + 1) * window, c * window : (c + 1) * window].flatten()
        cols = col_wrap[r * window : (r + 1) * window, c * window : (c + 1) * window].flatten()
        allowed = (rows[:, None] == rows[None, :]) & (cols[:, None] == cols[None, :])
        assert torch.equal(mask[index] == 0, allowed)


def test_resshift_mask_reproduces_the_official_masked_entry_counts():
    # Counts of masked (query, key) pairs per window, computed with the official code (16x16 and 16x32 maps).
    assert [(w != 0).sum().item() for w in shifted_window_mask(16, 16, 8, 4, "resshift")] == [0, 0, 2048, 2048]
    assert [(w != 0).sum().item() for w in shifted_window_mask(16, 32, 8, 4, "resshift")] == [0] * 4 + [2048] * 4


def test_maps_no_larger_than_the_window_use_one_unshifted_window():
    net = UNetModelSwin(**{**TINY_CONFIG, "image_size": 16, "attention_resolutions": [16, 8]})
    level1 = net.middle_block[1].blocks
    assert [block.window for block in level1] == [8, 8]
    assert [block.shift for block in level1] == [0, 0]
    assert "middle_block.1.blocks.1.attn_mask" not in net.state_dict()
    assert net.state_dict()["input_blocks.1.1.blocks.1.attn_mask"].shape == (4, 64, 64)
