"""The plugin conformance kit: checks that a plugin's components keep the srode plugin contract.

Call it from a plugin's tests (no fixture needed)::

    from srode_plugins.testing import check_arch, check_loss, check_model

    def test_mynet_keeps_the_arch_contract():
        check_arch("MyNet", {"num_feat": 8}, scales=(2, 4))

    def test_example_option_trains_and_reloads(tmp_path):
        check_model("my_plugin/options/MyNet_x4_demo.yml", iters=3, root=tmp_path)

Each `check_*` returns a `ConformanceReport` (what passed, what was skipped and why) or raises
`ConformanceError` (an AssertionError) whose message starts with the component and the name of the
failed check, e.g. ``MyNet: check 'output shape' failed: ...``.

The module is also a pytest plugin (entry point `pytest11`): it registers the markers `slow` and
`cuda` (a `cuda` test is skipped when CUDA is absent), prints the core and API versions in the
report header, and offers the fixtures `srode_demo` (demo data paths by scale) and `srode_device`
(every available device). Importing it imports neither torch nor BasicSR: pytest loads it in every run.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srode_plugins import API_VERSION, __version__

if TYPE_CHECKING:
    import torch

    from srode_plugins.data.demo import DemoPaths
    from srode_plugins.engine.train import RunResult

try:
    import pytest
except ModuleNotFoundError:  # the check functions work without pytest (e.g. in a plugin's self-check)
    pytest = None  # type: ignore[assignment]

ForwardFn = Callable[["torch.nn.Module", "torch.Tensor"], "torch.Tensor"]
ShapeRule = Callable[[tuple[int, ...], int], tuple[int, ...]]

# Names of the checks, as they appear in reports and failure messages.
REGISTRATION = "registration"
CONSTRUCTION = "construction"
OUTPUT_SHAPE = "output shape"
DETERMINISM = "determinism"
STATE_DICT_ROUND_TRIP = "state dict round trip"
BACKWARD = "backward"
DEVICE_MOVE = "device move"
BF16_AUTOCAST = "bf16 autocast"
LOSS_VALUE = "loss value"
OPTION_FILE = "option file"
TRAINING_STEPS = "training steps"
WEIGHTS_UPDATE = "weights update"
CHECKPOINT_FILES = "checkpoint files"
WEIGHTS_RELOAD = "weights reload"
RESUME = "resume"
VALIDATION = "validation"


class ConformanceError(AssertionError):
    """A component broke the plugin contract; `check` names the check, `subject` the component."""

    def __init__(self, subject: str, check: str, detail: str) -> None:
        super().__init__(f"{subject}: check '{check}' failed: {detail}")
        self.subject = subject
        self.check = check
        self.detail = detail


@dataclass
class ConformanceReport:
    """Which checks a component passed, and which were skipped (check -> reason)."""

    subject: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.subject}: {len(self.passed)} checks passed ({', '.join(self.passed)})"
        if self.skipped:
            text += "; skipped: " + ", ".join(f"{check} ({why})" for check, why in self.skipped.items())
        return text


@contextlib.contextmanager
def _checking(report: ConformanceReport, check: str) -> Iterator[None]:
    """Run one check: an AssertionError or any exception inside becomes a ConformanceError naming `check`."""
    try:
        yield
    except ConformanceError:
        raise
    except AssertionError as exc:
        raise ConformanceError(report.subject, check, str(exc)) from exc
    except Exception as exc:
        raise ConformanceError(report.subject, check, f"{type(exc).__name__}: {exc}") from exc
    if check not in report.passed:
        report.passed.append(check)


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and torch (CPU and CUDA), as `basicsr train` does with `manual_seed`."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max())


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    import torch

    return torch.allclose(a.detach().float().cpu(), b.detach().float().cpu(), rtol=rtol, atol=atol)


def _state_differences(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    """Keys missing on either side or whose tensors differ (exact comparison), for messages."""
    import torch

    problems = [f"'{k}' only in the first" for k in first if k not in second]
    problems += [f"'{k}' only in the second" for k in second if k not in first]
    for key in first:
        if key in second and torch.is_tensor(first[key]) and not torch.equal(first[key].cpu(), second[key].cpu()):
            problems.append(f"'{key}' differs")
    return problems


def _default_forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net(x)


def super_resolved_shape(input_shape: tuple[int, ...], scale: int, out_channels: int | None = None) -> tuple[int, ...]:
    """(B, C, H, W) -> (B, out_channels or C, H * scale, W * scale): what an SR network must return."""
    batch, channels, height, width = input_shape
    return (batch, out_channels or channels, height * scale, width * scale)


# ---------------------------------------------------------------- archs


@dataclass(frozen=True)
class _ArchCase:
    name: str
    opt: dict[str, Any]
    scale: int
    seed: int
    forward: ForwardFn
    expected_shape: ShapeRule

    def build(self, seed: int | None = None) -> torch.nn.Module:
        from srode_plugins.components import build_component

        seed_everything(self.seed if seed is None else seed)
        return build_component("archs", {"type": self.name, **self.opt})

    def run(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        import torch

        output = self.forward(net, x)
        if not torch.is_tensor(output):
            raise AssertionError(f"forward returned {type(output).__name__}, not a tensor; pass `forward=` to "
                                 f"check_arch when the network needs other inputs or returns several values")
        return output


def _check_registration(report: ConformanceReport, name: str) -> None:
    from srode_plugins.components import basicsr_registry, load_component

    with _checking(report, REGISTRATION):
        factory = load_component("archs", name)
        if not callable(factory):
            raise AssertionError(f"the entry point names {factory!r}, which is not a class or function")
        registered = basicsr_registry("archs").get(name)
        if registered is not factory:
            raise AssertionError(f"BasicSR's ARCH_REGISTRY holds {registered!r} under '{name}', not {factory!r}")


def _check_output_shape(report: ConformanceReport, case: _ArchCase, net: torch.nn.Module,
                        x: torch.Tensor) -> torch.Tensor:
    import torch

    with _checking(report, OUTPUT_SHAPE), torch.no_grad():
        output = case.run(net.eval(), x)
        expected = tuple(case.expected_shape(tuple(x.shape), case.scale))
        if tuple(output.shape) != expected:
            raise AssertionError(f"scale {case.scale}: input {tuple(x.shape)} gave {tuple(output.shape)}, "
                                 f"expected {expected}")
        if output.dtype != torch.float32:
            raise AssertionError(f"float32 input gave a {output.dtype} output")
        if not bool(torch.isfinite(output).all()):
            raise AssertionError(f"scale {case.scale}: the output holds NaN or inf")
    return output


def _check_determinism(report: ConformanceReport, case: _ArchCase, net: torch.nn.Module, x: torch.Tensor,
                       reference: torch.Tensor) -> None:
    import torch

    with _checking(report, DETERMINISM):
        again = case.build()
        problems = _state_differences(net.state_dict(), again.state_dict())
        if problems:
            raise AssertionError(f"two networks built after seeding with {case.seed} differ: "
                                 f"{', '.join(problems[:5])}. Draw initial weights only from torch's (or the seeded "
                                 f"numpy / random) generators, never from an unseeded source")
        with torch.no_grad():
            repeated = case.run(again.eval(), x)
        if not _close(reference, repeated, rtol=1e-5, atol=1e-6):
            raise AssertionError(f"same weights and input, different outputs in eval mode (max abs difference "
                                 f"{_max_abs_diff(reference, repeated):.3g}): the forward pass is random")


def _check_state_dict_round_trip(report: ConformanceReport, case: _ArchCase, net: torch.nn.Module, x: torch.Tensor,
                                 reference: torch.Tensor) -> None:
    import torch

    with _checking(report, STATE_DICT_ROUND_TRIP):
        state = net.state_dict()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        try:
            loaded = torch.load(buffer, weights_only=True)
        except Exception as exc:
            raise AssertionError(f"the state dict does not load with torch.load(weights_only=True): {exc}. "
                                 f"Keep only tensors in it") from exc
        other = case.build(seed=case.seed + 1)
        try:
            other.load_state_dict(loaded, strict=True)
        except RuntimeError as exc:
            raise AssertionError(f"a second network does not accept the state dict (strict): {exc}") from exc
        problems = _state_differences(state, other.state_dict())
        if problems:
            raise AssertionError(f"after loading, the state dicts differ: {', '.join(problems[:5])}")
        with torch.no_grad():
            reloaded = case.run(other.eval(), x)
        if not _close(reference, reloaded, rtol=1e-5, atol=1e-6):
            raise AssertionError(f"a network built with another seed and loaded with this state dict gives other "
                                 f"outputs (max abs difference {_max_abs_diff(reference, reloaded):.3g}): some state "
                                 f"is not in state_dict(). Register tensors with nn.Parameter or register_buffer "
                                 f"(persistent) instead of plain attributes")


def _check_backward(report: ConformanceReport, case: _ArchCase, net: torch.nn.Module, x: torch.Tensor,
                    allow_unused_parameters: bool) -> None:
    import torch

    with _checking(report, BACKWARD):
        net = copy.deepcopy(net).train()  # a training-mode pass updates BatchNorm statistics: keep `net` intact
        output = case.run(net, x)
        output.float().square().mean().backward()
        trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        unused = [n for n, p in trainable if p.grad is None]
        if trainable and len(unused) == len(trainable):
            raise AssertionError("no parameter received a gradient: the output is detached from the weights")
        if unused and not allow_unused_parameters:
            raise AssertionError(f"{len(unused)} parameter(s) get no gradient ({', '.join(unused[:5])}); DDP "
                                 f"training fails on them unless `find_unused_parameters: true`. Remove them, or pass "
                                 f"allow_unused_parameters=True")
        not_finite = [n for n, p in trainable if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        if not_finite:
            raise AssertionError(f"non-finite gradients in {', '.join(not_finite[:5])}")


def _tensors_on(net: torch.nn.Module, device_type: str) -> list[str]:
    """Names of parameters and buffers NOT on `device_type`."""
    return [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.device.type != device_type]


def _check_device_move(report: ConformanceReport, case: _ArchCase, net: torch.nn.Module, x: torch.Tensor,
                       reference: torch.Tensor, cuda: bool | None) -> None:
    import torch

    if cuda is False or (cuda is None and not _cuda_available()):
        report.skipped[DEVICE_MOVE] = "CUDA not available" if cuda is None else "cuda=False"
        return
    with _checking(report, DEVICE_MOVE):
        moved = copy.deepcopy(net).to("cuda")
        left_behind = _tensors_on(moved, "cuda")
        if left_behind:
            raise AssertionError(f".to('cuda') left {', '.join(left_behind[:5])} on another device")
        with torch.no_grad():
            output = case.run(moved.eval(), x.cuda())
        if output.device.type != "cuda":
            raise AssertionError(f"a CUDA input gave an output on {output.device}")
        # TF32 convolutions on CUDA differ from CPU float32 by ~1e-3 relative.
        scale = float(reference.abs().max()) + 1e-6
        if not _close(output, reference, rtol=1e-2, atol=1e-2 * scale):
            raise AssertionError(f"CUDA and CPU outputs differ by up to {_max_abs_diff(output, reference):.3g}")
        moved.to("cpu")
        left_behind = _tensors_on(moved, "cpu")
        if left_behind:
            raise AssertionError(f".to('cpu') left {', '.join(left_behind[:5])} on CUDA")
        problems = _state_differences(net.state_dict(), moved.state_dict())
        if problems:
            raise AssertionError(f"the weights changed on the way to CUDA and back: {', '.join(problems[:5])}")


def _check_bf16_autocast(report: ConformanceReport, case: _ArchCase, net: torch.nn.Module, x: torch.Tensor,
                         reference: torch.Tensor, bf16: bool, bf16_tolerance: float, cuda: bool | None) -> None:
    import torch

    if not bf16:
        report.skipped[BF16_AUTOCAST] = "bf16=False (the arch declares no bf16 support)"
        return
    use_cuda = cuda is not False and _cuda_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    with _checking(report, BF16_AUTOCAST):
        target = copy.deepcopy(net).to(device).eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            output = case.run(target, x.to(device))
        if tuple(output.shape) != tuple(reference.shape):
            raise AssertionError(f"on {device.type}: shape {tuple(output.shape)} under autocast, "
                                 f"{tuple(reference.shape)} without")
        if not bool(torch.isfinite(output).all()):
            raise AssertionError(f"on {device.type}: the output holds NaN or inf under bf16 autocast")
        error = float((output.float().cpu() - reference).norm() / (reference.norm() + 1e-6))
        if error > bf16_tolerance:
            raise AssertionError(f"on {device.type}: relative L2 error {error:.3g} against float32 exceeds "
                                 f"{bf16_tolerance} (pass bf16_tolerance= or bf16=False if bf16 is not supported)")


def check_arch(
    name: str,
    opt: Mapping[str, Any] | None = None,
    *,
    scales: Sequence[int] = (4,),
    scale_key: str | None = "upscale",
    in_channels: int = 3,
    out_channels: int | None = None,
    lr_size: tuple[int, int] = (16, 24),
    batch_size: int = 2,
    seed: int = 0,
    forward: ForwardFn | None = None,
    expected_shape: ShapeRule | None = None,
    cuda: bool | None = None,
    bf16: bool = True,
    bf16_tolerance: float = 0.1,
    allow_unused_parameters: bool = False,
) -> ConformanceReport:
    """Check that arch `name` keeps the contract of a `srode.archs` component.

    Checks: registration (the entry point loads and is registered in BasicSR's ARCH_REGISTRY under
    `name`); construction from the option dict `{"type": name, **opt, scale_key: scale}`; output shape
    (B, in_channels, *lr_size) -> (B, out_channels, H * scale, W * scale), float32 and finite, for every
    scale in `scales`; determinism (same seed, same weights and outputs); state dict round trip (save,
    `torch.load(weights_only=True)`, load strictly into a differently seeded network, same outputs);
    backward (every trainable parameter gets a finite gradient); device move CPU -> CUDA -> CPU (skipped
    without CUDA, or with cuda=False); bf16 autocast (finite, within `bf16_tolerance` relative L2 of float32).

    scale_key: the constructor argument taking the scale (None: `opt` sets it; then pass one scale).
    forward: `(net, x) -> output tensor` for networks needing other inputs (default `net(x)`).
    expected_shape: `(input shape, scale) -> output shape` for networks that are not SR networks, e.g. a
    discriminator's `lambda shape, scale: (shape[0], 1)` (default `super_resolved_shape`).
    Inputs are uniform in [0, 1]. Returns the report; raises ConformanceError naming the failed check.
    """
    import torch

    report = ConformanceReport(subject=name)
    _check_registration(report, name)
    if scale_key is None and len(scales) != 1:
        raise ValueError(f"check_arch({name!r}): with scale_key=None the option sets the scale; pass one scale, "
                         f"not {tuple(scales)}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, in_channels, *lr_size, generator=generator)
    shape_rule = expected_shape or (lambda shape, scale: super_resolved_shape(shape, scale, out_channels))
    for scale in scales:
        case_opt = dict(opt or {})
        if scale_key is not None:
            case_opt[scale_key] = scale
        case = _ArchCase(name=name, opt=case_opt, scale=scale, seed=seed, forward=forward or _default_forward,
                         expected_shape=shape_rule)
        with _checking(report, CONSTRUCTION):
            net = case.build()
            if not isinstance(net, torch.nn.Module):
                raise AssertionError(f"building {{'type': {name!r}, **{case_opt!r}}} gave a "
                                     f"{type(net).__name__}, not an nn.Module")
        reference = _check_output_shape(report, case, net, x)
        _check_determinism(report, case, net, x, reference)
        _check_state_dict_round_trip(report, case, net, x, reference)
        _check_backward(report, case, net, x, allow_unused_parameters)
        _check_device_move(report, case, net, x, reference, cuda)
        _check_bf16_autocast(report, case, net, x, reference, bf16, bf16_tolerance, cuda)
    return report


# ---------------------------------------------------------------- losses


def check_loss(name: str, opt: Mapping[str, Any] | None = None, *, shape: tuple[int, ...] = (2, 3, 16, 16),
               zero_on_identical: bool = True, seed: int = 0) -> ConformanceReport:
    """Check that loss `name` keeps the contract of a `srode.losses` component.

    Checks: registration (in BasicSR's LOSS_REGISTRY under `name`); construction from
    `{"type": name, **opt}`; loss value (`loss(pred, target)` on two `shape` tensors in [0, 1] is a finite
    scalar, and 0 for identical inputs unless zero_on_identical=False); backward (finite, non-zero
    gradient for the prediction); bf16 autocast (finite scalar).
    """
    import torch

    from srode_plugins.components import basicsr_registry, build_component, load_component

    report = ConformanceReport(subject=name)
    with _checking(report, REGISTRATION):
        factory = load_component("losses", name)
        if basicsr_registry("losses").get(name) is not factory:
            raise AssertionError(f"BasicSR's LOSS_REGISTRY does not hold {factory!r} under '{name}'")
    with _checking(report, CONSTRUCTION):
        loss = build_component("losses", {"type": name, **(opt or {})})
        if not isinstance(loss, torch.nn.Module):
            raise AssertionError(f"building it gave a {type(loss).__name__}, not an nn.Module")
    generator = torch.Generator().manual_seed(seed)
    pred = torch.rand(shape, generator=generator)
    target = torch.rand(shape, generator=generator)
    with _checking(report, LOSS_VALUE):
        value = loss(pred, target)
        if not torch.is_tensor(value) or value.dim() != 0:
            got = f"shape {tuple(value.shape)}" if torch.is_tensor(value) else type(value).__name__
            raise AssertionError(f"loss(pred, target) must be a 0-dim tensor, got {got}")
        if not bool(torch.isfinite(value)):
            raise AssertionError(f"loss(pred, target) = {float(value)}")
        if zero_on_identical and abs(float(loss(target, target))) > 1e-6:
            raise AssertionError(f"loss(x, x) = {float(loss(target, target)):.3g}, expected 0 "
                                 f"(pass zero_on_identical=False if that is intended)")
    with _checking(report, BACKWARD):
        leaf = pred.clone().requires_grad_(True)
        loss(leaf, target).backward()
        if leaf.grad is None or not bool(torch.isfinite(leaf.grad).all()) or float(leaf.grad.abs().sum()) == 0:
            raise AssertionError("the prediction gets no finite, non-zero gradient")
    with _checking(report, BF16_AUTOCAST), torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(pred, target)
        if value.dim() != 0 or not bool(torch.isfinite(value)):
            raise AssertionError(f"under bf16 autocast loss(pred, target) is not a finite scalar: shape "
                                 f"{tuple(value.shape)}, {int((~torch.isfinite(value)).sum())} non-finite value(s)")
    return report


# ---------------------------------------------------------------- models


def _option_source(option: str | os.PathLike[str] | Mapping[str, Any], root: Path) -> tuple[str, dict[str, Any]]:
    """The option file to train with (a mapping is written under `root`) and its contents."""
    import yaml

    from srode_plugins.options import load_yaml

    if isinstance(option, Mapping):
        contents = copy.deepcopy(dict(option))
        path = root / f"{contents.get('name', 'conformance')}.yml"
        path.write_text(yaml.safe_dump(contents, sort_keys=False), encoding="utf-8")
        return str(path), contents
    return str(option), load_yaml(option)


def _net_state(model: Any, attribute: str) -> dict[str, Any] | None:
    net = getattr(model, attribute, None)
    if net is None:
        return None
    net = model.get_bare_model(net)
    net = getattr(net, "_orig_mod", net)  # torch.compile wrapper
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def check_model(
    option: str | os.PathLike[str] | Mapping[str, Any],
    iters: int = 3,
    *,
    root: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    validate: bool = True,
    resume: bool = True,
) -> ConformanceReport:
    """Train an option file (path or dict) for `iters` iterations and check what a model must do.

    Checks: option file (loads); training steps (`iters` steps, none skipped for a non-finite loss, finite
    logged losses); weights update (net_g changes between the last two checkpoints; needs iters >= 2);
    checkpoint files (`net_g_latest.pth` and the final `.state`); weights reload (a network built from
    `network_g` loads `net_g_latest.pth` strictly and equals the trained net_g, and net_g_ema if present);
    validation (finite metrics; skipped with validate=False, which sets `val: ~`); resume (`--auto_resume`
    continues from the saved state to iteration iters + 1; skipped with resume=False).

    Runs on the option's data (use demo:// roots or `overrides=["..."]`) with `num_worker_per_gpu: 0`,
    under `root` (a temporary folder, removed afterwards, when None). `overrides` are `key.path=value`
    strings applied last, as with `basicsr train --set`.
    """
    if iters < 1:
        raise ValueError(f"check_model: iters must be >= 1, got {iters}")
    if root is None:
        with tempfile.TemporaryDirectory(prefix="srode-conformance-") as folder:
            return check_model(option, iters, root=folder, overrides=overrides, validate=validate, resume=resume)
    root_dir = Path(root).resolve()
    root_dir.mkdir(parents=True, exist_ok=True)
    name = str(option.get("name", "option")) if isinstance(option, Mapping) else Path(option).stem
    report = ConformanceReport(subject=f"model of {name}")
    with _checking(report, OPTION_FILE):
        option_path, contents = _option_source(option, root_dir)
        if "network_g" not in contents:
            raise AssertionError("the option has no `network_g`")
    run_overrides = [
        f"train.total_iter={iters}",
        "logger.print_freq=1",
        f"logger.save_checkpoint_freq={max(iters - 1, 1)}",
        "logger.use_tb_logger=false",
        "datasets.train.num_worker_per_gpu=0",
        *([] if validate else ["val=~"]),
        *overrides,
    ]
    summary = _check_training(report, option_path, run_overrides, root_dir, iters)
    models_dir = Path(summary.experiments_root) / "models"
    _check_weights_update(report, models_dir, iters)
    _check_checkpoint_files(report, summary, iters)
    _check_weights_reload(report, summary.model, models_dir / "net_g_latest.pth")
    if validate and contents.get("val"):
        with _checking(report, VALIDATION):
            bad = {k: v for k, v in summary.metrics.items() if not math.isfinite(float(v))}
            if bad:
                raise AssertionError(f"non-finite validation metrics {bad}")
    elif validate:
        report.skipped[VALIDATION] = "the option has no `val` section"
    else:
        report.skipped[VALIDATION] = "validate=False"
    if resume:
        _check_resume(report, option_path, run_overrides, root_dir, iters)
    else:
        report.skipped[RESUME] = "resume=False"
    return report


def _check_training(report: ConformanceReport, option_path: str, run_overrides: list[str], root: Path,
                    iters: int) -> RunResult:
    from srode_plugins.engine.train import train

    with _checking(report, TRAINING_STEPS):
        summary = train(option_path, overrides=run_overrides, root=root)
        if summary.iter != iters:
            raise AssertionError(f"training stopped at iteration {summary.iter}, expected {iters}")
        if summary.skipped_steps:
            raise AssertionError(f"{summary.skipped_steps} of {iters} steps skipped for a non-finite loss")
        not_finite = [(i, v) for i, v in summary.history if not math.isfinite(v)]
        if not_finite:
            raise AssertionError(f"non-finite logged loss at (iteration, value) {not_finite}")
    return summary


def _check_weights_update(report: ConformanceReport, models_dir: Path, iters: int) -> None:
    import torch

    if iters < 2:
        report.skipped[WEIGHTS_UPDATE] = "needs iters >= 2"
        return
    with _checking(report, WEIGHTS_UPDATE):
        before = torch.load(models_dir / f"net_g_{iters - 1}.pth", map_location="cpu", weights_only=True)["params"]
        after = torch.load(models_dir / f"net_g_{iters}.pth", map_location="cpu", weights_only=True)["params"]
        if not _state_differences(before, after):
            raise AssertionError(f"net_g is identical after iterations {iters - 1} and {iters}: the optimiser "
                                 f"does not update it (zero learning rate? parameters missing from the optimiser?)")


def _check_checkpoint_files(report: ConformanceReport, summary: RunResult, iters: int) -> None:
    with _checking(report, CHECKPOINT_FILES):
        experiment = Path(summary.experiments_root)
        expected = [experiment / "models" / "net_g_latest.pth", experiment / "training_states" / f"{iters}.state"]
        missing = [str(p) for p in expected if not p.is_file()]
        if missing:
            raise AssertionError(f"missing after training: {', '.join(missing)}")


def _check_weights_reload(report: ConformanceReport, model: Any, checkpoint: Path) -> None:
    from srode_plugins.checkpoints import load_network_weights
    from srode_plugins.components import build_component

    with _checking(report, WEIGHTS_RELOAD):
        for attribute, param_key in (("net_g", "params"), ("net_g_ema", "params_ema")):
            trained = _net_state(model, attribute)
            if trained is None:
                continue
            fresh = build_component("archs", model.opt["network_g"])
            load_network_weights(fresh, checkpoint, option_key="path.pretrain_network_g", param_key=param_key)
            problems = _state_differences(trained, fresh.state_dict())
            if problems:
                raise AssertionError(f"{checkpoint.name} ['{param_key}'] does not restore {attribute}: "
                                     f"{', '.join(problems[:5])}")


def _check_resume(report: ConformanceReport, option_path: str, run_overrides: list[str], root: Path,
                  iters: int) -> None:
    from srode_plugins.engine.train import train

    with _checking(report, RESUME):
        summary = train(option_path, overrides=[*run_overrides, f"train.total_iter={iters + 1}"], root=root,
                        auto_resume=True)
        if summary.resumed_from != iters:
            raise AssertionError(f"--auto_resume did not resume from iteration {iters} "
                                 f"(resumed from: {summary.resumed_from})")
        if summary.iter != iters + 1:
            raise AssertionError(f"the resumed run ended at iteration {summary.iter}, expected {iters + 1}")


# ---------------------------------------------------------------- pytest plugin


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "slow: takes more than ~10 s on a 2-core CPU (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped when none is available)")


def pytest_report_header(config: Any) -> str:
    return f"srode core {__version__} (plugin API {API_VERSION})"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    needing_cuda = [item for item in items if item.get_closest_marker("cuda") is not None]
    if needing_cuda and not _cuda_available():
        for item in needing_cuda:
            item.add_marker(pytest.mark.skip(reason="needs CUDA (marked `cuda`), none available"))


if pytest is not None:

    @pytest.fixture(scope="session")
    def srode_demo() -> Callable[[int], DemoPaths]:
        """`srode_demo(scale)` -> DemoPaths of the embedded demo data (prepared once, then cached)."""
        from srode_plugins.data.demo import demo_dataset

        return demo_dataset

    @pytest.fixture(params=["cpu", "cuda"])
    def srode_device(request: Any) -> torch.device:
        """Each device in turn: CPU, then CUDA (skipped when not available)."""
        import torch

        if request.param == "cuda" and not _cuda_available():
            pytest.skip("CUDA not available")
        return torch.device(request.param)
