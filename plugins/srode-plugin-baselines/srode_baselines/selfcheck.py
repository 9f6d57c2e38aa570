"""`basicsr plugins check baselines`: the shipped option files build, x2 -> x4 transfer and self-ensemble work.

Quick on a CPU: each option file's network is built at a reduced width and depth (same keyword
arguments, so a misspelt key still fails), on random weights.
"""

from __future__ import annotations

from pathlib import Path

OPTIONS = Path(__file__).resolve().parent / "options"
SHRUNK_WIDTH = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}


def _check_option_files() -> int:
    import torch

    from srode_plugins import api

    files = sorted(OPTIONS.glob("*.yml"))
    if not files:
        raise RuntimeError(f"no option files in {OPTIONS}: reinstall srode-plugin-baselines")
    for path in files:
        opt = api.load_options(path).opt
        network, scale = opt["network_g"], opt["scale"]
        shrunk = {key: SHRUNK_WIDTH.get(key, value) for key, value in network.items()}
        with torch.no_grad():
            output = api.build_component("archs", shrunk)(torch.rand(1, 3, 4, 4))
        if output.shape != (1, 3, 4 * scale, 4 * scale):
            raise RuntimeError(f"{path.name}: network_g gives {tuple(output.shape)} for a 4x4 input at scale {scale}")
    return len(files)


def _check_scale_transfer() -> int:
    import torch

    from srode_baselines.scale_transfer import UPSAMPLER_PREFIXES, transfer_weights
    from srode_plugins import api

    x2 = api.build_component("archs", {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "upscale": 2, **_tiny()})
    x4 = api.build_component("archs", {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "upscale": 4, **_tiny()})
    report = transfer_weights(x2.state_dict(), x4, UPSAMPLER_PREFIXES["EDSR"])
    upsampler = sorted(name for name in x4.state_dict() if name.startswith("upsample."))
    if report.new != upsampler or not all(
        torch.equal(x4.state_dict()[name], x2.state_dict()[name]) for name in report.copied
    ):
        raise RuntimeError(f"x2 -> x4 transfer: expected only {upsampler} left new, got {report.new}")
    return len(report.copied)


def _tiny() -> dict[str, int]:
    return {"num_feat": SHRUNK_WIDTH["num_feat"], "num_block": SHRUNK_WIDTH["num_block"]}


def _check_self_ensemble() -> None:
    import torch

    from srode_plugins import api

    net = api.build_component("archs", {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "upscale": 2, **_tiny()})
    x = torch.rand(1, 3, 5, 7)
    with torch.no_grad():
        output = api.self_ensemble(net.eval(), x)
    if output.shape != (1, 3, 10, 14) or not torch.isfinite(output).all():
        raise RuntimeError(
            f"self-ensemble of EDSR x2 on a 5x7 input gave {tuple(output.shape)}, expected (1, 3, 10, 14)"
        )


def run() -> str:
    """Raise on failure; return a one-line summary."""
    count = _check_option_files()
    copied = _check_scale_transfer()
    _check_self_ensemble()
    return f"{count} option files build; x2 -> x4 transfer copies {copied} tensors, upsampler new; self-ensemble ok"
