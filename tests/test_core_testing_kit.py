"""The conformance kit (srode_plugins.testing) passes conforming components and names the failed check otherwise.

The archs under test live in a throw-away distribution (a module and a .dist-info folder with entry points) put
on sys.path for this module only, so registration goes through the real entry-point discovery. All networks are
tiny and randomly initialised.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import srode_plugins.api  # noqa: F401  (BasicSR compat patches)
from srode_plugins import discovery
from srode_plugins.testing import (
    BACKWARD,
    BF16_AUTOCAST,
    CONSTRUCTION,
    DETERMINISM,
    DEVICE_MOVE,
    LOSS_VALUE,
    OUTPUT_SHAPE,
    REGISTRATION,
    STATE_DICT_ROUND_TRIP,
    WEIGHTS_UPDATE,
    ConformanceError,
    check_arch,
    check_loss,
    check_model,
)

PROBE_ARCHS = '''
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class GoodNet(nn.Module):
    """conv to 3 * upscale^2 channels, then PixelShuffle: (B, 3, H, W) -> (B, 3, H * upscale, W * upscale)."""

    def __init__(self, upscale=2):
        super().__init__()
        self.upscale = upscale
        self.conv = nn.Conv2d(3, 3 * upscale * upscale, 3, padding=1)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), self.upscale)


class WrongScaleNet(GoodNet):
    """Ignores `upscale`: always x2."""

    def __init__(self, upscale=2):
        super().__init__(upscale=2)


class UnseededInitNet(GoodNet):
    """Draws its initial weights from a fresh, unseeded NumPy generator."""

    def __init__(self, upscale=2):
        super().__init__(upscale=upscale)
        weight = np.random.default_rng().standard_normal(tuple(self.conv.weight.shape)).astype("float32")
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(weight))


class PlainAttributeNet(GoodNet):
    """Keeps a random gain as a plain tensor attribute, which state_dict() does not hold."""

    def __init__(self, upscale=2):
        super().__init__(upscale=upscale)
        self.gain = torch.rand(1, 3, 1, 1) + 0.5

    def forward(self, x):
        return super().forward(x) * self.gain


class BatchNormNet(GoodNet):
    """GoodNet followed by BatchNorm whose running statistics become those of the last training-mode batch."""

    def __init__(self, upscale=2):
        super().__init__(upscale=upscale)
        self.norm = nn.BatchNorm2d(3, momentum=1.0)

    def forward(self, x):
        return self.norm(super().forward(x))


class CpuConstantNet(GoodNet):
    """Makes a constant on the CPU in every forward pass, so it breaks on any other device."""

    def forward(self, x):
        return super().forward(x) * torch.ones(1, 3, 1, 1)


class UnusedParameterNet(GoodNet):
    """Holds a convolution its forward pass never uses."""

    def __init__(self, upscale=2):
        super().__init__(upscale=upscale)
        self.spare = nn.Conv2d(3, 3, 1)
'''
PROBE_CLASSES = ("GoodNet", "WrongScaleNet", "UnseededInitNet", "PlainAttributeNet", "BatchNormNet",
                 "CpuConstantNet", "UnusedParameterNet")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _write_distribution(site: Path, dist: str, module: str, source: str, archs: dict[str, str]) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.0\n", encoding="utf-8")
    lines = ["[srode.api]", f"1.0 = {module}", "", "[srode.archs]", *(f"{k} = {v}" for k, v in archs.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """{class name: registered arch name} of the probe archs, installed for this module only (unique names)."""
    tag = uuid.uuid4().hex[:8]
    site = tmp_path_factory.mktemp("probe_site")
    module = f"kitprobe_{tag}"
    names = {cls: f"{cls}{tag}" for cls in PROBE_CLASSES}
    _write_distribution(site, f"kitprobe-{tag}", module, PROBE_ARCHS, {n: f"{module}:{c}" for c, n in names.items()})
    # A second distribution whose entry point names a class its module lacks.
    missing_module = f"kitprobe_missing_{tag}"
    names["Missing"] = f"Missing{tag}"
    _write_distribution(site, f"kitprobe-missing-{tag}", missing_module, "",
                        {names["Missing"]: f"{missing_module}:Nothing"})
    sys.path.insert(0, str(site))
    discovery.refresh()
    yield names
    sys.path.remove(str(site))
    discovery.refresh()


def test_a_conforming_arch_passes_every_arch_check_at_each_declared_scale(probe: dict[str, str]) -> None:
    report = check_arch(probe["GoodNet"], scales=(2, 3, 4), cuda=False)
    assert report.passed == [REGISTRATION, CONSTRUCTION, OUTPUT_SHAPE, DETERMINISM, STATE_DICT_ROUND_TRIP, BACKWARD,
                             BF16_AUTOCAST]
    assert report.skipped == {DEVICE_MOVE: "cuda=False"}
    assert "7 checks passed" in str(report)


def test_the_training_mode_pass_of_the_backward_check_leaves_batch_norm_statistics_alone(probe: dict[str, str]) -> None:
    # Were the backward check run on the network itself, the later bf16 comparison would see other statistics.
    assert BF16_AUTOCAST in check_arch(probe["BatchNormNet"], cuda=False).passed


def test_a_discriminator_passes_with_its_own_output_shape_rule(probe: dict[str, str]) -> None:
    report = check_arch("VGGStyleDiscriminator", {"num_in_ch": 3, "num_feat": 4, "input_size": 128}, scale_key=None,
                        scales=(1,), lr_size=(128, 128), expected_shape=lambda shape, scale: (shape[0], 1), cuda=False)
    assert OUTPUT_SHAPE in report.passed


def test_an_arch_ignoring_its_scale_fails_the_output_shape_check(probe: dict[str, str]) -> None:
    with pytest.raises(ConformanceError) as failure:
        check_arch(probe["WrongScaleNet"], scales=(2, 4), cuda=False)
    assert failure.value.check == OUTPUT_SHAPE
    assert str(failure.value).startswith(f"{probe['WrongScaleNet']}: check 'output shape' failed: scale 4:")
    assert "expected (2, 3, 64, 96)" in str(failure.value)


def test_an_arch_with_unseeded_initial_weights_fails_the_determinism_check(probe: dict[str, str]) -> None:
    with pytest.raises(AssertionError, match=r"check 'determinism' failed: .*'conv.weight' differs") as failure:
        check_arch(probe["UnseededInitNet"], cuda=False)
    assert failure.value.check == DETERMINISM


def test_an_arch_keeping_state_outside_its_state_dict_fails_the_round_trip_check(probe: dict[str, str]) -> None:
    with pytest.raises(ConformanceError, match="check 'state dict round trip' failed: .*not in state_dict") as failure:
        check_arch(probe["PlainAttributeNet"], cuda=False)
    assert failure.value.check == STATE_DICT_ROUND_TRIP


@needs_cuda
def test_a_conforming_arch_moves_to_cuda_and_back_and_runs_under_bf16_autocast_there(probe: dict[str, str]) -> None:
    report = check_arch(probe["GoodNet"], scales=(2, 4))
    assert {DEVICE_MOVE, BF16_AUTOCAST} <= set(report.passed) and not report.skipped


@needs_cuda
def test_an_arch_making_cpu_tensors_in_forward_fails_the_device_move_check(probe: dict[str, str]) -> None:
    with pytest.raises(ConformanceError, match="check 'device move' failed: RuntimeError: .*device") as failure:
        check_arch(probe["CpuConstantNet"])
    assert failure.value.check == DEVICE_MOVE


def test_an_arch_with_an_unused_parameter_fails_the_backward_check_unless_allowed(probe: dict[str, str]) -> None:
    with pytest.raises(ConformanceError, match=r"check 'backward' failed: 2 parameter\(s\) get no gradient \(spare"):
        check_arch(probe["UnusedParameterNet"], cuda=False)
    assert BACKWARD in check_arch(probe["UnusedParameterNet"], cuda=False, allow_unused_parameters=True).passed


def test_unknown_and_unimportable_arch_names_fail_the_registration_check(probe: dict[str, str]) -> None:
    with pytest.raises(ConformanceError, match=r"NoSuchNet: check 'registration' failed: .*unknown arch 'NoSuchNet'"):
        check_arch("NoSuchNet")
    with pytest.raises(ConformanceError, match=r"check 'registration' failed: .*has no attribute 'Nothing'"):
        check_arch(probe["Missing"])


def test_a_constructor_rejecting_the_option_fails_the_construction_check(probe: dict[str, str]) -> None:
    with pytest.raises(ConformanceError, match=r"check 'construction' failed: .*num_feat"):
        check_arch(probe["GoodNet"], {"num_feat": 8}, cuda=False)


def test_a_stock_basicsr_loss_passes_and_an_unreduced_one_fails_the_loss_value_check() -> None:
    assert check_loss("L1Loss").passed == [REGISTRATION, CONSTRUCTION, LOSS_VALUE, BACKWARD, BF16_AUTOCAST]
    with pytest.raises(ConformanceError, match="L1Loss: check 'loss value' failed: .*0-dim") as failure:
        check_loss("L1Loss", {"reduction": "none"})
    assert failure.value.check == LOSS_VALUE


def _tiny_option(lr: float, loss_weight: float = 1.0) -> dict:
    """Stock MSRResNet (2 blocks, 8 channels) at x2 on 32-pixel patches of the demo data."""
    return {
        "name": f"kit_probe_lr{lr}_w{loss_weight}", "model_type": "SRModel", "scale": 2, "num_gpu": 0, "manual_seed": 3,
        "datasets": {
            "train": {"name": "demo_train", "type": "PairedImageDataset", "dataroot_gt": "demo://train/HR",
                      "dataroot_lq": "demo://train/LR_bicubic/X2", "filename_tmpl": "{}",
                      "io_backend": {"type": "disk"}, "gt_size": 32, "use_hflip": True, "use_rot": True,
                      "batch_size_per_gpu": 2, "num_worker_per_gpu": 0, "dataset_enlarge_ratio": 1},
        },
        "network_g": {"type": "MSRResNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 2,
                      "upscale": 2},
        "train": {"ema_decay": 0.9, "optim_g": {"type": "Adam", "lr": lr}, "total_iter": 100,
                  "scheduler": {"type": "MultiStepLR", "milestones": [100], "gamma": 0.5},
                  "pixel_opt": {"type": "L1Loss", "loss_weight": loss_weight}},
    }


def test_a_stock_model_trains_checkpoints_reloads_and_resumes_under_the_kit(tmp_path: Path) -> None:
    report = check_model(_tiny_option(lr=1e-3), iters=2, root=tmp_path)
    assert report.passed == ["option file", "training steps", "weights update", "checkpoint files", "weights reload",
                             "resume"]
    assert report.skipped == {"validation": "the option has no `val` section"}


def test_a_model_whose_weights_never_change_fails_the_weights_update_check(tmp_path: Path) -> None:
    with pytest.raises(ConformanceError, match="check 'weights update' failed: net_g is identical") as failure:
        # a zero loss weight: zero gradients, so Adam leaves every weight where it was (lr 0 is refused by the schema)
        check_model(_tiny_option(lr=1e-3, loss_weight=0.0), iters=2, root=tmp_path, resume=False)
    assert failure.value.check == WEIGHTS_UPDATE


PLUGIN_USAGE_TESTS = '''
import pytest
import torch


def test_srode_device_gives_each_available_device(srode_device):
    assert torch.zeros(1, device=srode_device).device.type == srode_device.type


@pytest.mark.cuda
def test_marked_cuda():
    assert torch.cuda.is_available()
'''


def test_the_pytest_plugin_adds_a_header_markers_and_the_device_fixture(tmp_path: Path) -> None:
    (tmp_path / "test_usage.py").write_text(PLUGIN_USAGE_TESTS, encoding="utf-8")
    registered = any(ep.value == "srode_plugins.testing" for ep in importlib.metadata.entry_points(group="pytest11"))
    load = [] if registered else ["-p", "srode_plugins.testing"]
    result = subprocess.run([sys.executable, "-m", "pytest", *load, "-p", "no:cacheprovider", "-rs", "--strict-markers",
                             str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"srode core {srode_plugins.__version__} (plugin API {srode_plugins.API_VERSION})" in result.stdout
    expected = "3 passed" if torch.cuda.is_available() else "1 passed, 2 skipped"
    assert expected in result.stdout, result.stdout
