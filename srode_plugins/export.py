"""`basicsr export`: write a network as safetensors, ONNX or TorchScript, verified before it is kept.

The file is written beside the target under a temp name and renamed only when it reproduces the PyTorch
network: safetensors tensor by tensor, ONNX (through onnxruntime) and TorchScript on random inputs of two
sizes, within a tolerance that depends on the dtype. A refused export leaves nothing at the target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from srode_plugins.errors import SrodeError

FORMATS = ("safetensors", "onnx", "torchscript")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Largest accepted |export - PyTorch fp32| over both test inputs, relative to max(1, |reference|): fp32 allows
# reordered sums; fp16 / bf16 their rounding (unit roundoff 4.9e-4 / 3.9e-3) grown through a deep network.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}
# (height, width) of the two random test inputs, in LR pixels: different sizes check the dynamic axes.
TEST_SIZES = ((32, 32), (24, 40))
ONNX_OPSET = 18


class ExportRefused(SrodeError):
    """The exported file does not reproduce the PyTorch network (or cannot be checked); nothing was written."""


@dataclass(frozen=True)
class ExportReport:
    """What `export_network` wrote and how closely it reproduces the PyTorch network (fp32)."""

    path: Path
    format: str
    dtype: str
    max_abs_diff: float  # over both test inputs; 0.0 for safetensors (compared tensor by tensor)
    tolerance: float
    sizes: tuple[tuple[int, int], ...]


def input_channels(net: nn.Module) -> int:
    """Image channels the network reads: the input channels of its first 4-D (convolution) weight."""
    weight = next((p for p in net.state_dict().values() if p.ndim == 4), None)
    if weight is None:
        raise SrodeError(f"{type(net).__name__} has no convolution weight to read its input channels from")
    return int(weight.shape[1])


def _test_inputs(channels: int, seed: int = 0) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(1, channels, h, w, generator=generator) for h, w in TEST_SIZES]


def _write_verified(target: Path, write: Callable[[Path], None], verify: Callable[[Path], float],
                    tolerance: float, what: str) -> float:
    """`write` into a temp file beside `target`, `verify` it (max abs difference), rename only when within."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        diff = verify(tmp)
        if not diff <= tolerance:  # also refuses NaN
            raise ExportRefused(f"{what} differs from the PyTorch network by max {diff:.3e} on random inputs "
                                f"{_sizes()} (tolerance {tolerance:.0e}); nothing written to '{target}'. The network "
                                "probably branches on the input size or uses an op the exporter translates "
                                "differently: try another --format or --dtype")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return diff


def _sizes() -> str:
    return " and ".join(f"{h}x{w}" for h, w in TEST_SIZES)


def _max_relative_diff(outputs: list[Tensor], references: list[Tensor]) -> float:
    worst = 0.0
    for out, ref in zip(outputs, references, strict=True):
        if out.shape != ref.shape:
            return float("inf")
        scale = max(1.0, ref.abs().max().item())
        worst = max(worst, (out.float() - ref).abs().max().item() / scale)
    return worst


def _save_safetensors(net: nn.Module, dtype: torch.dtype, metadata: dict[str, str]) -> tuple[Callable, Callable]:
    from safetensors.torch import load_file, save_file

    state = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in net.state_dict().items()}

    def write(path: Path) -> None:
        save_file(state, str(path), metadata=metadata)

    def verify(path: Path) -> float:
        loaded = load_file(str(path))
        if loaded.keys() != state.keys():
            return float("inf")
        return max((float((loaded[k].double() - state[k].double()).abs().max()) for k in state if state[k].numel()),
                   default=0.0)

    return write, verify


def _onnx(net: nn.Module, dtype: torch.dtype, references: list[Tensor],
          inputs: list[Tensor]) -> tuple[Callable, Callable]:
    import onnxruntime

    if dtype == torch.bfloat16:
        raise ExportRefused("bf16 ONNX cannot be verified: onnxruntime's CPU provider has no bfloat16 "
                            "convolution; export ONNX as fp32 or fp16, or bf16 as safetensors / torchscript")
    typed = net.to(dtype)

    def write(path: Path) -> None:
        height, width = torch.export.Dim("height", min=8), torch.export.Dim("width", min=8)
        try:
            torch.onnx.export(typed, (inputs[0].to(dtype),), str(path), input_names=["input"],
                              output_names=["output"], opset_version=ONNX_OPSET, dynamo=True,
                              dynamic_shapes=({2: height, 3: width},), external_data=False, verbose=False)
        except Exception as exc:  # the exporter's own errors are long; the first line names the cause
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ExportRefused(f"torch.onnx cannot export {type(net).__name__}: {first}; try --format "
                                "torchscript or safetensors") from None

    def verify(path: Path) -> float:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        numpy_dtype = np.float16 if dtype == torch.float16 else np.float32
        outputs = [torch.from_numpy(session.run(None, {"input": x.numpy().astype(numpy_dtype)})[0]) for x in inputs]
        return _max_relative_diff(outputs, references)

    return write, verify


def _torchscript(net: nn.Module, dtype: torch.dtype, references: list[Tensor],
                 inputs: list[Tensor]) -> tuple[Callable, Callable]:
    typed = net.to(dtype)

    def write(path: Path) -> None:
        with torch.no_grad():
            traced = torch.jit.trace(typed, inputs[0].to(dtype), check_trace=False)
        torch.jit.save(traced, str(path))

    def verify(path: Path) -> float:
        loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return _max_relative_diff([loaded(x.to(dtype)) for x in inputs], references)

    return write, verify


def export_network(net: nn.Module, output: str | os.PathLike[str], fmt: str, dtype: str = "fp32", *,
                   scale: int | None = None, arch: str | None = None,
                   tolerance: float | None = None) -> ExportReport:
    """Write `net` to `output` as `fmt` (safetensors | onnx | torchscript) in `dtype` (fp32 | fp16 | bf16).

    ONNX and TorchScript take (1, C, H, W) in [0, 1] with any H, W >= 8 and return (1, C_out, s*H, s*W); they
    are checked on random inputs of the `TEST_SIZES` against `net` in fp32, safetensors tensor by tensor.
    Raises ExportRefused (nothing written) when the difference exceeds `tolerance` (default TOLERANCE[dtype]).
    """
    if fmt not in FORMATS:
        raise SrodeError(f"--format '{fmt}': choose one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise SrodeError(f"--dtype '{dtype}': choose one of {', '.join(DTYPES)}")
    target = Path(output)
    net = net.float().eval().cpu()
    limit = TOLERANCE[dtype] if tolerance is None else tolerance
    if fmt == "safetensors":
        metadata = {"format": "pt", **({"arch": arch} if arch else {}), **({"scale": str(scale)} if scale else {})}
        write, verify = _save_safetensors(net, DTYPES[dtype], metadata)
        diff = _write_verified(target, write, verify, 0.0, "the safetensors file")
        return ExportReport(target, fmt, dtype, diff, 0.0, ())
    inputs = _test_inputs(input_channels(net))
    with torch.no_grad():
        references = [net(x) for x in inputs]
    build = _onnx if fmt == "onnx" else _torchscript
    write, verify = build(net, DTYPES[dtype], references, inputs)
    what = "the ONNX model (onnxruntime)" if fmt == "onnx" else "the TorchScript module"
    try:
        diff = _write_verified(target, write, verify, limit, what)
    finally:
        net.float()
    return ExportReport(target, fmt, dtype, diff, limit, TEST_SIZES)
