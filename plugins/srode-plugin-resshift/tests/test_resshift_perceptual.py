"""LPIPS from local weights only: torchvision-layout backbone files map onto the lpips package's slices."""

import pytest
import torch
import torchvision
from srode_resshift.perceptual import LPIPSLoss, build_lpips


@pytest.fixture
def alexnet_checkpoint(tmp_path):
    # a randomly initialised AlexNet saved in torchvision's layout stands in for alexnet-owt-7be5be79.pth
    torch.manual_seed(0)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def test_backbone_weights_land_in_the_lpips_slices(alexnet_checkpoint):
    model = build_lpips("alex", str(alexnet_checkpoint))
    source = torch.load(alexnet_checkpoint, weights_only=True)
    torch.testing.assert_close(getattr(model.net.slice1, "0").weight, source["features.0.weight"])
    torch.testing.assert_close(getattr(model.net.slice5, "10").bias, source["features.10.bias"])
    assert not any(p.requires_grad for p in model.parameters())


def test_lpips_loss_is_zero_for_identical_images_and_positive_otherwise(alexnet_checkpoint):
    loss = LPIPSLoss(loss_weight=2.0, net="alex", backbone_path=str(alexnet_checkpoint))
    image = torch.rand(2, 3, 32, 32)
    assert float(loss(image, image)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(image, torch.rand(2, 3, 32, 32))) > 0


def test_unknown_lpips_network_names_the_option():
    with pytest.raises(ValueError, match="'train.lpips_opt.net'"):
        LPIPSLoss(net="squeeze", backbone_path="x.pth")
