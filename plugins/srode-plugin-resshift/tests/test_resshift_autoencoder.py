"""Autoencoders: official VQ-f4 checkpoint layout and outputs, latent shapes, pixel space, missing weights.

Networks are randomly (or deterministically) initialised; the real VQ-f4 weights are never needed.
"""

from __future__ import annotations

import pytest
import torch
from srode_resshift.autoencoder import (
    RESSHIFT_VQ_F4_CONFIG,
    PixelSpaceAutoencoder,
    VectorQuantizer,
    VQAutoencoder,
)
from srode_resshift.reference import fill_deterministic, read_reference_data

from srode_plugins.api import MissingWeightsError

TINY_VQ_F4: dict[str, object] = {
    "channels": 32,
    "channel_mult": [1, 2, 4],
    "num_res_blocks": 1,
    "n_embed": 64,
    "resolution": 32,
}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return read_reference_data("resshift_vq_f4_manifest.json")


@pytest.fixture(scope="module")
def full_size_vq() -> VQAutoencoder:
    with torch.device("meta"):
        return VQAutoencoder(load_weights=False, **RESSHIFT_VQ_F4_CONFIG)


def test_full_size_vq_f4_has_exactly_the_official_state_dict_keys_and_shapes(full_size_vq, manifest):
    ours = {key: list(value.shape) for key, value in full_size_vq.state_dict().items()}
    assert ours == {key: entry["shape"] for key, entry in manifest["state_dict"].items()}


def test_full_size_vq_f4_has_the_official_55_3m_parameters(full_size_vq, manifest):
    count = sum(parameter.numel() for parameter in full_size_vq.parameters())
    assert count == manifest["num_parameters"] == 55_322_782
    assert round(count / 1e6, 1) == 55.3


def test_state_dict_made_from_the_manifest_loads_strictly_into_the_vq_f4(full_size_vq, manifest):
    state = {key: torch.zeros(entry["shape"], device="meta") for key, entry in manifest["state_dict"].items()}
    result = full_size_vq.load_state_dict(state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_tiny_vq_reproduces_the_official_code_encode_and_decode():
    reference = read_reference_data("resshift_tiny_reference_outputs.json")
    config, ddconfig = reference["vq_config"], reference["vq_config"]["ddconfig"]
    net = VQAutoencoder(
        load_weights=False,
        channels=ddconfig["ch"],
        channel_mult=ddconfig["ch_mult"],
        num_res_blocks=ddconfig["num_res_blocks"],
        attn_resolutions=ddconfig["attn_resolutions"],
        z_channels=ddconfig["z_channels"],
        embed_dim=config["embed_dim"],
        n_embed=config["n_embed"],
        resolution=ddconfig["resolution"],
    )
    fill_deterministic(net)
    official_range_image = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(7)).tanh()
    with torch.no_grad():
        latent = net.encode((official_range_image + 1) / 2)
        decoded = net.decode(latent) * 2 - 1
    torch.testing.assert_close(latent.flatten(), torch.tensor(reference["vq"]["latent"]), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(decoded.flatten(), torch.tensor(reference["vq"]["decoded"]), atol=2e-5, rtol=1e-5)


def test_vq_f4_encodes_to_a_4x_smaller_3_channel_latent_and_decodes_back():
    torch.manual_seed(0)
    net = VQAutoencoder(load_weights=False, **TINY_VQ_F4)
    assert (net.latent_channels, net.downsample_factor, net.latent_scale) == (3, 4, 1.0)
    images = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        latents = net.encode(images)
        decoded = net.decode(latents)
    assert latents.shape == (2, 3, 8, 12)
    assert decoded.shape == (2, 3, 32, 48)


def test_latent_scale_multiplies_encodings_and_is_undone_before_decoding():
    torch.manual_seed(0)
    plain = VQAutoencoder(load_weights=False, **TINY_VQ_F4)
    scaled = VQAutoencoder(load_weights=False, latent_scale=0.5, **TINY_VQ_F4)
    scaled.load_state_dict(plain.state_dict())
    images = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(scaled.encode(images), 0.5 * plain.encode(images))
        torch.testing.assert_close(scaled.decode(scaled.encode(images)), plain.decode(plain.encode(images)))


def test_quantizer_returns_the_nearest_codebook_entry_with_a_straight_through_gradient():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(n_embed=16, embed_dim=3)
    torch.nn.init.normal_(quantizer.embedding.weight)
    z = torch.randn(2, 3, 4, 5, requires_grad=True)
    quantised = quantizer(z)
    vectors = z.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    nearest = quantizer.embedding.weight[torch.cdist(vectors, quantizer.embedding.weight).argmin(1)]
    torch.testing.assert_close(quantised.detach().permute(0, 2, 3, 1).reshape(-1, 3), nearest)
    quantised.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))


def test_missing_checkpoint_path_names_the_file_the_option_and_the_alternative(tmp_path):
    absent = tmp_path / "weights" / "autoencoder_vq_f4.pth"
    with pytest.raises(MissingWeightsError) as error:
        VQAutoencoder(absent, option_key="network_g.autoencoder.checkpoint", **TINY_VQ_F4)
    message = str(error.value)
    assert str(absent) in message
    assert "network_g.autoencoder.checkpoint" in message
    assert "PixelSpaceAutoencoder" in message


def test_no_checkpoint_path_looks_in_the_torch_cache_and_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError) as error:
        VQAutoencoder(None, **TINY_VQ_F4)
    message = str(error.value)
    assert "autoencoder_vq_f4.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "github.com/zsyOAOA/ResShift/releases" in message


def test_present_checkpoint_is_loaded_and_the_network_frozen(tmp_path):
    torch.manual_seed(0)
    source = VQAutoencoder(load_weights=False, frozen=False, **TINY_VQ_F4)
    fill_deterministic(source)
    path = tmp_path / "autoencoder_vq_f4.pth"
    torch.save({f"module.{key}": value for key, value in source.state_dict().items()}, path)
    loaded = VQAutoencoder(path, **TINY_VQ_F4)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training
    assert not any(parameter.requires_grad for parameter in loaded.parameters())
    assert all(parameter.requires_grad for parameter in source.parameters())


def test_pixel_space_maps_unit_range_to_symmetric_range_and_back_exactly():
    space = PixelSpaceAutoencoder()
    assert (space.latent_channels, space.downsample_factor, space.latent_scale) == (3, 1, 1.0)
    images = torch.tensor([0.0, 0.25, 1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(space.encode(images), torch.tensor([-1.0, -0.5, 1.0]).view(1, 3, 1, 1))
    torch.testing.assert_close(space.decode(space.encode(images)), images)
