"""The official ResShift checkpoints, declared to `basicsr weights` through the `srode.weights` entry points.

Light on purpose (no torch import): `basicsr weights list` imports this module.
"""

from __future__ import annotations

from srode_plugins.weights import WeightsFile

_RELEASE = "https://github.com/zsyOAOA/ResShift/releases/download/v2.0"

RESSHIFT_VQ_F4 = WeightsFile(
    name="resshift_vq_f4",
    filename="autoencoder_vq_f4.pth",  # autoencoder.VQ_F4_CHECKPOINT_NAME (that module imports torch)
    url=f"{_RELEASE}/autoencoder_vq_f4.pth",
    sha256="e967eaa2c380152811c53e312990d6967a8a957c4f7590f19490ec72110b2889",
    used_by="autoencoder type: VQAutoencoderF4 (autoencoder.checkpoint)",
    source="URL from the official ResShift inference script (_LINK['vqgan']); SHA-256 from a third-party public "
    "setup script that checks this release asset with sha256sum -c (the authors publish no hash); size unknown",
)

RESSHIFT_REALSR_X4_V3 = WeightsFile(
    name="resshift_realsr_x4_v3",
    filename="resshift_realsrx4_s4_v3.pth",
    url=f"{_RELEASE}/resshift_realsrx4_s4_v3.pth",
    sha256=None,
    used_by="network_g type: UNetModelSwin (official real-world x4 UNet, 4 steps), path.pretrain_network_g",
    source="URL from the official ResShift inference script (_LINK['v3']); no published SHA-256 or size was found",
)
