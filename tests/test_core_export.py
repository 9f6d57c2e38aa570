"""`basicsr export`: safetensors round-trips exactly, ONNX (onnxruntime) and TorchScript reproduce PyTorch on inputs
of several sizes, the dtype is the one asked for, and an export that does not reproduce the network is refused."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from srode_plugins.checkpoints import read_state_dict
from srode_plugins.cli import main
from srode_plugins.export import TOLERANCE, ExportRefused, export_network


def tiny_sr_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 12, 3, 1, 1),
                         nn.PixelShuffle(2)).eval()


class ExportOnlyBranch(nn.Module):
    """Computes something else while being exported: what verification must catch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_sr_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return y + 0.5 if torch.compiler.is_exporting() else y


def test_safetensors_round_trips_every_tensor_exactly(tmp_path: Path) -> None:
    net = tiny_sr_net()
    report = export_network(net, tmp_path / "net.safetensors", "safetensors", scale=2, arch="Sequential")
    loaded = read_state_dict(report.path)
    assert loaded.keys() == net.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())


def test_fp16_export_stores_half_precision_weights(tmp_path: Path) -> None:
    net = tiny_sr_net()
    loaded = read_state_dict(export_network(net, tmp_path / "half.safetensors", "safetensors", "fp16").path)
    assert {t.dtype for t in loaded.values()} == {torch.float16}
    assert all(torch.equal(loaded[k], v.half()) for k, v in net.state_dict().items())


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    half = session.get_inputs()[0].type == "tensor(float16)"
    return torch.from_numpy(session.run(None, {"input": x.numpy().astype(np.float16 if half else np.float32)})[0])


def test_onnx_fp32_matches_pytorch_on_sizes_it_was_not_verified_on(tmp_path: Path) -> None:
    net = tiny_sr_net()
    report = export_network(net, tmp_path / "net.onnx", "onnx")
    assert len(report.sizes) == 2 and report.sizes[0] != report.sizes[1]
    assert report.max_abs_diff <= TOLERANCE["fp32"]
    for size in ((17, 23), (40, 12)):  # dynamic height / width: sizes the exporter never saw
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            expected = net(x)
        got = run_onnx(report.path, x)
        assert got.shape == (1, 3, 2 * size[0], 2 * size[1])
        assert (got - expected).abs().max().item() <= TOLERANCE["fp32"]


def test_onnx_fp16_has_half_inputs_and_weights(tmp_path: Path) -> None:
    import onnx

    report = export_network(tiny_sr_net(), tmp_path / "half.onnx", "onnx", "fp16")
    model = onnx.load(str(report.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert {init.data_type for init in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert 0 < report.max_abs_diff <= TOLERANCE["fp16"]


def test_torchscript_equals_pytorch(tmp_path: Path) -> None:
    net = tiny_sr_net()
    report = export_network(net, tmp_path / "net.pt", "torchscript")
    loaded = torch.jit.load(str(report.path))
    x = torch.rand(1, 3, 19, 29)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_an_onnx_graph_that_computes_something_else_is_refused_and_not_written(tmp_path: Path) -> None:
    refused = r"differs from the PyTorch network by max 5\.000e-01 .*\(tolerance 1e-04\); nothing written"
    with pytest.raises(ExportRefused, match=refused):
        export_network(ExportOnlyBranch(), tmp_path / "bad.onnx", "onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_export_command_prints_the_difference_and_names_the_detected_arch(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]
                                                                              ) -> None:
    from srode_plugins.api import build_component

    torch.manual_seed(0)
    edsr = build_component("archs", {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1,
                                     "upscale": 2})
    torch.save({"params": edsr.state_dict()}, tmp_path / "edsr.pth")
    assert main(["export", "--weights", str(tmp_path / "edsr.pth"), "--format", "torchscript",
                 "--output", str(tmp_path / "edsr.pt")]) == 0
    out = capsys.readouterr().out
    assert "x2 EDSR (recognised by srode-plugin-baselines)" in out
    assert "max abs difference 0.000e+00 vs PyTorch fp32" in out
    assert main(["export", "--weights", str(tmp_path / "edsr.pth"), "--format", "onnx", "--dtype", "bf16",
                 "--output", str(tmp_path / "edsr.onnx")]) == 2
    assert "bf16 ONNX cannot be verified" in capsys.readouterr().err
    assert not (tmp_path / "edsr.onnx").exists()


def test_logger_save_format_safetensors_writes_networks_atomically_as_safetensors(tmp_path: Path) -> None:
    from basicsr.models.base_model import BaseModel

    from srode_plugins import compat

    compat.apply()

    net, ema = tiny_sr_net(0), tiny_sr_net(1)
    model = SimpleNamespace(opt={"path": {"models": str(tmp_path)}, "logger": {"save_format": "safetensors"}},
                            get_bare_model=lambda n: n)
    BaseModel.save_network(model, [net, ema], "net_g", 100, param_key=["params", "params_ema"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net_g_100.safetensors"]
    for key, source in (("params", net), ("params_ema", ema)):
        loaded = read_state_dict(tmp_path / "net_g_100.safetensors", key)
        assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
