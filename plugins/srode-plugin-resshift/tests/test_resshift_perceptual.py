"""The LPIPS training loss runs on the core's LPIPS network, built from local weights only."""

import pytest
import torch
import torchvision
from srode_resshift.perceptual import LPIPSLoss


@pytest.fixture
def alexnet_checkpoint(tmp_path):
    # a randomly initialised AlexNet saved in torchvision's layout stands in for alexnet-owt-7be5be79.pth
    torch.manual_seed(0)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def test_lpips_loss_is_zero_for_identical_images_and_positive_otherwise(alexnet_checkpoint):
    loss = LPIPSLoss(loss_weight=2.0, net="alex", backbone_path=str(alexnet_checkpoint))
    image = torch.rand(2, 3, 32, 32)
    assert float(loss(image, image)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(image, torch.rand(2, 3, 32, 32))) > 0


def test_lpips_loss_is_the_weighted_mean_of_the_core_lpips_distance(alexnet_checkpoint):
    from srode_plugins.api import lpips_distance

    loss = LPIPSLoss(loss_weight=2.0, net="alex", backbone_path=str(alexnet_checkpoint))
    prediction, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    core = lpips_distance(prediction, target, net="alex", backbone_path=str(alexnet_checkpoint))
    torch.testing.assert_close(loss(prediction, target), 2.0 * core.mean())


def test_unknown_lpips_network_names_the_option():
    with pytest.raises(ValueError, match="'train.lpips_opt.net'"):
        LPIPSLoss(net="squeeze", backbone_path="x.pth")

