"""The DISTS file for `basicsr weights fetch dists` (entry point `srode.weights` of the core distribution).

Light on purpose (no torch import): `basicsr weights list` imports this module. LPIPS's AlexNet/VGG16 backbones are
the core's torchvision entries `alexnet` and `vgg16`; LPIPS's heads ship in the `lpips` wheel and NIQE's pristine
model in the `basicsr` wheel.
"""

from __future__ import annotations

from srode_plugins.weights import WeightsFile

DISTS = WeightsFile(
    name="dists",
    filename="DISTS_weights-f5e65c96.pth",  # networks.DISTS_WEIGHTS
    url="https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/DISTS_weights-f5e65c96.pth",
    sha256=None,
    used_by="DISTS metric (val.metrics type: dists, basicsr evaluate --metrics dists; with vgg16)",
    source="URL as pyiqa 0.1.16 builds it (pyiqa.archs.dists_arch, Hugging Face store); no published SHA-256 or "
    "size was found (the 8 hex digits in the file name are pyiqa's and unverified as a SHA-256 prefix)",
)
