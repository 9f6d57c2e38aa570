"""Any-model loading: checkpoints of known archs with random weights are recognised by their keys and shapes
(srode plugins' detectors first, then spandrel), rebuilt at the right scale and compute what the original did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from srode_plugins import components
from srode_plugins.api import build_component
from srode_plugins.checkpoints import atomic_save_safetensors
from srode_plugins.cli import main
from srode_plugins.detection import SPANDREL_ARCH, detect, detect_file, resolve_auto_network
from srode_plugins.errors import OptionError, SrodeError
from srode_plugins.options import load

SRODE_ARCHS = [
    ("EDSR", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 2, "upscale": 3}, "srode-plugin-baselines"),
    ("RRDBNet", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 2},
     "srode-plugin-baselines"),
    ("NODESRNet", {"num_feat": 8, "upscale": 4, "ode_layers": 2, "num_ode_blocks": 2, "time_dependent": True,
                   "augment_channels": 2, "solver": "rk4", "step_size": 0.5}, "srode-plugin-node"),
    ("RK4DualAttnRDN", {"num_feat": 8, "num_block": 2, "num_layer": 2, "growth_rate": 4, "upscale": 2,
                        "integrator": "rk2", "coefficients": "per_entry", "attention": "channel", "se_reduction": 4},
     "srode-plugin-rk4gan"),
    ("RK4DualAttnRDN", {"num_feat": 8, "num_block": 1, "num_layer": 3, "growth_rate": 4, "upscale": 4,
                        "attention": "dual", "nonlocal_kind": "embedded"}, "srode-plugin-rk4gan"),
]
# Settings that leave no trace in the weights: given as overrides, as a user would with --arch-opt.
TRACELESS = {"solver", "step_size"}
SPANDREL_ARCHS = [
    ("SwinIR", {"upscale": 2, "in_chans": 3, "img_size": 8, "window_size": 4, "img_range": 1.0, "depths": [2],
                "embed_dim": 12, "num_heads": [2], "mlp_ratio": 2, "upsampler": "pixelshuffle"}, "SwinIR", 2),
    ("SRVGGNetCompact", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 4},
     "RealESRGAN Compact", 4),
]


@pytest.fixture(autouse=True, scope="module")
def _unregister_the_archs_these_tests_load() -> Iterator[None]:
    # Other test modules check what happens while a plugin arch is NOT loaded yet in this process.
    registries = {kind: set(components.basicsr_registry(kind).keys()) for kind in ("archs",)}
    saved = [(live, dict(live)) for live in (components._LOADED, components._SRODE_REGISTRY, components.BROKEN)]
    yield
    for kind, names in registries.items():
        registry = components.basicsr_registry(kind)
        for name in set(registry.keys()) - names:
            del registry._obj_map[name]
    for live, before in saved:
        live.clear()
        live.update(before)


def random_net(arch: str, options: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_component("archs", {"type": arch, **options}).eval()
    with torch.no_grad():  # random weights everywhere, including the RK tableau and zero-initialised biases
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.1)
    return net


def same_output(a: torch.nn.Module, b: torch.nn.Module, size: tuple[int, int] = (16, 16)) -> bool:
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize(("arch", "options", "dist"), SRODE_ARCHS,
                         ids=[f"{a[0]}-{i}" for i, a in enumerate(SRODE_ARCHS)])
def test_a_srode_detector_rebuilds_the_arch_its_scale_and_its_output(arch: str, options: dict, dist: str) -> None:
    net = random_net(arch, options)
    overrides = {k: v for k, v in options.items() if k in TRACELESS}
    detected = detect(net.state_dict(), overrides=overrides)
    assert (detected.arch, detected.detected_by) == (arch, dist)
    assert detected.scale == options.get("upscale", options.get("scale"))
    assert {k: detected.options[k] for k in options} == options
    assert same_output(net, detected.network)


@pytest.mark.parametrize(("arch", "options", "name", "scale"), SPANDREL_ARCHS, ids=[a[0] for a in SPANDREL_ARCHS])
def test_spandrel_recognises_community_archs_srode_has_no_detector_for(arch: str, options: dict, name: str,
                                                                        scale: int) -> None:
    net = random_net(arch, options)
    detected = detect(net.state_dict())
    assert (detected.arch, detected.scale, detected.detected_by) == (name, scale, "spandrel")
    assert same_output(net, detected.network)


def test_a_nodesrnet_at_x2_or_x3_takes_its_scale_from_the_user(tmp_path: Path) -> None:
    net = random_net("NODESRNet", {"num_feat": 8, "upscale": 3, "solver": "rk4", "step_size": 0.5})
    torch.save({"params": net.state_dict()}, tmp_path / "node.pth")
    with pytest.raises(SrodeError, match=r"do not say its scale; pass --scale N"):
        detect_file(tmp_path / "node.pth")
    detected = detect_file(tmp_path / "node.pth", scale=3, overrides={"solver": "rk4", "step_size": 0.5})
    assert (detected.scale, detected.options["upscale"]) == (3, 3)
    assert same_output(net, detected.network)


def test_a_safetensors_training_checkpoint_is_recognised_from_its_ema_weights(tmp_path: Path) -> None:
    net = random_net(*SRODE_ARCHS[0][:2])
    other = random_net("EDSR", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 2, "upscale": 3})
    with torch.no_grad():
        other.conv_last.bias.add_(1.0)
    atomic_save_safetensors({"params": other.state_dict(), "params_ema": net.state_dict()}, tmp_path / "n.safetensors")
    assert same_output(net, detect_file(tmp_path / "n.safetensors").network)
    assert same_output(other, detect_file(tmp_path / "n.safetensors", param_key="params").network)


def test_weights_nobody_recognises_fail_in_one_line_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    torch.save({"params": {"mystery.weight": torch.zeros(4, 3, 3, 3)}}, tmp_path / "mystery.pth")
    with pytest.raises(SrodeError) as caught:
        detect_file(tmp_path / "mystery.pth")
    message = str(caught.value)
    assert "\n" not in message
    assert "mystery.pth" in message and "nor spandrel recognises" in message and "--arch NAME" in message


def write_options(tmp_path: Path, weights: Path, network_g: dict | None) -> Path:
    opt = {"name": "auto", "model_type": "SRModel", "path": {"pretrain_network_g": str(weights)}}
    if network_g is not None:
        opt["network_g"] = network_g
    (tmp_path / "auto.yml").write_text(yaml.safe_dump(opt))
    return tmp_path / "auto.yml"


def test_type_auto_fills_network_g_from_the_pretrained_weights(tmp_path: Path) -> None:
    net = random_net(*SRODE_ARCHS[0][:2])
    torch.save({"params": net.state_dict()}, tmp_path / "edsr.pth")
    opts = load(write_options(tmp_path, tmp_path / "edsr.pth", {"type": "auto", "res_scale": 1}))
    resolve_auto_network(opts)
    assert opts.opt["network_g"] == {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 2,
                                     "upscale": 3, "res_scale": 1}
    assert opts.opt["scale"] == 3


def test_an_absent_network_g_with_spandrel_weights_builds_the_spandrel_arch(tmp_path: Path) -> None:
    arch, options, _, _ = SPANDREL_ARCHS[0]
    net = random_net(arch, options)
    torch.save({"params_ema": net.state_dict()}, tmp_path / "swinir.pth")
    opts = load(write_options(tmp_path, tmp_path / "swinir.pth", None))
    resolve_auto_network(opts)
    assert opts.opt["network_g"]["type"] == SPANDREL_ARCH
    rebuilt = build_component("archs", opts.opt["network_g"]).eval()
    assert same_output(net, rebuilt)


def test_type_auto_without_pretrained_weights_names_the_option_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "auto.yml").write_text(yaml.safe_dump({"name": "x", "network_g": {"type": "auto"}}))
    with pytest.raises(OptionError, match=r"auto\.yml: option 'network_g': .*pretrain_network_g, which is not set"):
        resolve_auto_network(load(tmp_path / "auto.yml"))


def test_infer_with_weights_alone_upsamples_by_the_detected_scale(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import cv2
    import numpy as np

    net = random_net(*SRODE_ARCHS[3][:2])
    torch.save({"params": net.state_dict()}, tmp_path / "rk4.pth")
    cv2.imwrite(str(tmp_path / "in.png"), np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8))
    code = main(["infer", "--weights", str(tmp_path / "rk4.pth"), "--input", str(tmp_path / "in.png"),
                 "--output", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 0
    assert "x2 RK4DualAttnRDN (recognised by srode-plugin-rk4gan)" in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / "out" / "in.png")).shape == (24, 20, 3)
