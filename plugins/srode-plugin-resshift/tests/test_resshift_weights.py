"""The ResShift checkpoints are declared to `basicsr weights` and every missing-file error names the fetch command."""

from __future__ import annotations

import pytest
from srode_resshift.autoencoder import VQ_F4_CHECKPOINT_NAME, VQAutoencoder
from srode_resshift.perceptual import LPIPSLoss
from srode_resshift.weights import RESSHIFT_REALSR_X4_V3, RESSHIFT_VQ_F4

from srode_plugins.api import MissingWeightsError
from srode_plugins.weights import weights_registry


def test_the_plugins_entry_points_register_its_checkpoints_under_their_official_file_names():
    registry = weights_registry()
    assert registry.get("resshift_vq_f4") == RESSHIFT_VQ_F4
    assert registry.get("resshift_realsr_x4_v3") == RESSHIFT_REALSR_X4_V3
    assert registry.provider("resshift_vq_f4") == "srode-plugin-resshift"
    assert RESSHIFT_VQ_F4.filename == VQ_F4_CHECKPOINT_NAME
    for entry in (RESSHIFT_VQ_F4, RESSHIFT_REALSR_X4_V3):
        assert entry.url == f"https://github.com/zsyOAOA/ResShift/releases/download/v2.0/{entry.filename}"
    assert registry.problems == []


def test_a_missing_vq_f4_checkpoint_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"Download it with: basicsr weights fetch resshift_vq_f4$"):
        VQAutoencoder(None, channels=32, channel_mult=(1, 2), n_embed=16)


@pytest.mark.parametrize(("net", "weights"), [("alex", "alexnet"), ("vgg", "vgg16")])
def test_a_missing_lpips_backbone_names_the_core_fetch_command(net, weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=rf"Download it with: basicsr weights fetch {weights}$"):
        LPIPSLoss(net=net)
