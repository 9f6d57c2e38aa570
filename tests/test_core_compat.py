"""Every patch in srode_plugins.compat does what it says, and the same test fails on upstream BasicSR 1.4.2.

A test marked with `fixed_and_upstream` runs twice: `[srode]` with the patch, and `[upstream]` with the unpatched
function put back from `compat.ORIGINALS` for the duration of the test. The `[upstream]` run is a strict xfail:
it must fail with the named exception, which proves the test pins down the bug the patch removes.
No VGG weights are needed: perceptual-loss tests use a tiny stand-in for torchvision's VGG (same `features`
layout) and SRODE_RANDOM_INIT_PRETRAINED=1; the real torchvision VGG is never built or downloaded.
"""

from __future__ import annotations

import collections
import importlib
import os
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from srode_plugins import compat
from srode_plugins.errors import (
    CheckpointError,
    DuplicateComponentError,
    MissingWeightsError,
    OptionError,
    UnknownComponentError,
)

# BasicSR modules, imported after srode_plugins.compat (without its patches `import basicsr` fails).
upstream_train = importlib.import_module("basicsr.train")
vgg_arch = importlib.import_module("basicsr.archs.vgg_arch")
base_model = importlib.import_module("basicsr.models.base_model")
dist_util = importlib.import_module("basicsr.utils.dist_util")
basicsr_options = importlib.import_module("basicsr.utils.options")
BaseModel = base_model.BaseModel
PerceptualLoss = importlib.import_module("basicsr.losses.basic_loss").PerceptualLoss
MultiStepRestartLR = importlib.import_module("basicsr.models.lr_scheduler").MultiStepRestartLR
Registry = importlib.import_module("basicsr.utils.registry").Registry


def fixed_and_upstream(raises: type[BaseException] | tuple[type[BaseException], ...], bug: str) -> Any:
    return pytest.mark.parametrize("upstream", [
        pytest.param(False, id="srode"),
        pytest.param(True, id="upstream", marks=pytest.mark.xfail(strict=True, raises=raises, reason=bug)),
    ])


def requires_patch(name: str) -> Any:
    return pytest.mark.skipif(not compat.APPLIED.get(name), reason=f"{name} is a no-op: upstream is already fixed")


def upstream_if(upstream: bool, monkeypatch: pytest.MonkeyPatch, owner: Any, attribute: str, key: str) -> None:
    if upstream:
        monkeypatch.setattr(owner, attribute, compat.ORIGINALS[key])


def bare_model(**opt: Any) -> BaseModel:
    return BaseModel({"num_gpu": 0, "is_train": True, "dist": False, **opt})


# ---------------------------------------------------------------- import of basicsr


@requires_patch("_fix_functional_tensor")
def test_basicsr_imports_once_functional_tensor_is_aliased() -> None:
    import basicsr.data.degradations as degradations
    from torchvision.transforms.functional_tensor import rgb_to_grayscale

    assert degradations.rgb_to_grayscale is rgb_to_grayscale
    assert compat._fix_functional_tensor() is False  # the module now resolves: running the fix again is a no-op


@pytest.mark.slow  # a fresh interpreter importing torch: 5-15 s on a busy 2-core CPU
@requires_patch("_fix_functional_tensor")
def test_without_the_alias_import_basicsr_fails(run_python: Any) -> None:
    result = run_python(["-c", "import basicsr"])
    assert result.returncode != 0
    assert "No module named 'torchvision.transforms.functional_tensor'" in result.stderr


# ---------------------------------------------------------------- registry


class FirstNet:
    pass


@requires_patch("_fix_registry")
@fixed_and_upstream(AssertionError, "Registry._do_register uses a bare assert")
def test_duplicate_registry_name_raises_an_error_naming_both_objects(upstream: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    upstream_if(upstream, monkeypatch, Registry, "_do_register", "Registry._do_register")
    registry = Registry("srode_test")
    registry.register(FirstNet)
    registry.register(FirstNet)  # the same object again is harmless
    impostor = type("FirstNet", (), {"__module__": "other_plugin.archs"})
    with pytest.raises(DuplicateComponentError) as error:
        registry.register(impostor)
    message = str(error.value)
    assert f"{FirstNet.__module__}.FirstNet" in message
    assert "other_plugin.archs.FirstNet" in message
    assert "'srode_test' registry" in message
    assert registry.get("FirstNet") is FirstNet


@requires_patch("_fix_registry")
@fixed_and_upstream(AssertionError, "Registry.get prints on a suffixed fallback lookup")
def test_registry_fallback_lookup_is_quiet(upstream: bool, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    upstream_if(upstream, monkeypatch, Registry, "get", "Registry.get")
    registry = Registry("srode_test")
    registry.register(FirstNet, suffix="basicsr")
    assert registry.get("FirstNet") is FirstNet
    with pytest.raises(KeyError, match="No object named 'Missing'"):
        registry.get("Missing")
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------- ordered_yaml


@pytest.fixture
def yaml_tables_restored() -> Any:
    """Undo whatever a test (the upstream ordered_yaml) does to PyYAML's global loader/dumper tables."""
    classes = [yaml.Loader, yaml.Dumper, getattr(yaml, "CLoader", yaml.Loader), getattr(yaml, "CDumper", yaml.Dumper)]
    attributes = ("yaml_constructors", "yaml_representers")
    saved = {(cls, attr): cls.__dict__[attr].copy() for cls in classes for attr in attributes if attr in cls.__dict__}
    yield
    for cls in classes:
        for attr in attributes:
            if (cls, attr) in saved:
                setattr(cls, attr, saved[(cls, attr)])
            elif attr in cls.__dict__:
                delattr(cls, attr)


@requires_patch("_fix_ordered_yaml")
@fixed_and_upstream(AssertionError, "ordered_yaml() adds its constructor to yaml.CLoader itself")
def test_ordered_yaml_keeps_key_order_without_changing_pyyaml_globally(
        upstream: bool, monkeypatch: pytest.MonkeyPatch, yaml_tables_restored: None) -> None:
    upstream_if(upstream, monkeypatch, basicsr_options, "ordered_yaml", "options.ordered_yaml")
    c_loader = getattr(yaml, "CLoader", yaml.Loader)
    c_dumper = getattr(yaml, "CDumper", yaml.Dumper)
    constructors_before = dict(c_loader.yaml_constructors)
    representers_before = dict(c_dumper.yaml_representers)

    loader, dumper = basicsr_options.ordered_yaml()

    loaded = yaml.load("b: 1\na: 2\n", Loader=loader)
    assert type(loaded) is collections.OrderedDict and list(loaded) == ["b", "a"]
    assert yaml.dump(loaded, Dumper=dumper) == "b: 1\na: 2\n"
    assert type(yaml.load("b: 1\n", Loader=c_loader)) is dict
    assert dict(c_loader.yaml_constructors) == constructors_before
    assert dict(c_dumper.yaml_representers) == representers_before


# ---------------------------------------------------------------- losses and VGG


class TinyVGG(nn.Module):
    """Stand-in for torchvision's VGG: only `features` matters to BasicSR (conv1_1, relu1_1)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())


class WouldDownload(Exception):
    """Raised by the stand-in when asked for pretrained weights (torchvision would download them)."""


def tiny_torchvision_vgg() -> SimpleNamespace:
    def vgg19(*, weights: Any = None, pretrained: bool = False, **kwargs: Any) -> TinyVGG:
        if pretrained or weights is not None:
            raise WouldDownload("pretrained VGG19 requested from torchvision")
        return TinyVGG()

    return SimpleNamespace(vgg19=vgg19)


@pytest.fixture
def tiny_vgg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build VGG feature extractors from TinyVGG (through srode's local-weights factory)."""
    assert isinstance(vgg_arch.vgg, compat._LocalVGGFactory)
    monkeypatch.setattr(vgg_arch.vgg, "_vgg", tiny_torchvision_vgg())


@requires_patch("_fix_perceptual_l2")
@fixed_and_upstream(AttributeError, "PerceptualLoss(criterion='l2') calls torch.nn.L2loss")
def test_perceptual_loss_l2_is_the_mean_squared_feature_difference(
        upstream: bool, monkeypatch: pytest.MonkeyPatch, tiny_vgg: None) -> None:
    monkeypatch.setenv(compat.RANDOM_INIT_ENV, "1")  # random VGG init: no weights file needed
    upstream_if(upstream, monkeypatch, PerceptualLoss, "__init__", "PerceptualLoss.__init__")
    loss = PerceptualLoss(layer_weights={"relu1_1": 1.0}, vgg_type="vgg19", use_input_norm=False, range_norm=False,
                          perceptual_weight=0.5, style_weight=0.0, criterion="l2")
    generator = torch.Generator().manual_seed(0)
    output, target = torch.rand(2, 3, 8, 8, generator=generator), torch.rand(2, 3, 8, 8, generator=generator)

    percep, style = loss(output, target)

    conv = loss.vgg.vgg_net.conv1_1
    expected = ((conv(output).relu() - conv(target).relu()) ** 2).mean() * 0.5
    assert style is None
    assert percep.item() == pytest.approx(expected.item(), rel=1e-6)


@requires_patch("_fix_vgg_weights")
@fixed_and_upstream(WouldDownload, "VGGFeatureExtractor asks torchvision for pretrained=True (a download)")
def test_missing_vgg_weights_raise_an_error_naming_file_folder_and_option(
        upstream: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(compat.RANDOM_INIT_ENV, raising=False)
    monkeypatch.delenv("SRODE_VGG_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)
    if upstream:
        monkeypatch.setattr(vgg_arch, "vgg", tiny_torchvision_vgg())  # upstream code with a recording torchvision
    with pytest.raises(MissingWeightsError) as error:
        vgg_arch.VGGFeatureExtractor(["relu1_1"], vgg_type="vgg19")
    message = str(error.value)
    assert "'vgg19-dcbb9e9d.pth'" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert str(tmp_path / "experiments" / "pretrained_models" / "vgg19-dcbb9e9d.pth") in message
    assert "SRODE_VGG_WEIGHTS" in message
    assert "train.perceptual_opt" in message
    assert "never downloads" in message


@requires_patch("_fix_vgg_weights")
def test_vgg_weights_load_from_the_torch_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     tiny_vgg: None) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(compat.RANDOM_INIT_ENV, raising=False)
    monkeypatch.delenv("SRODE_VGG_WEIGHTS", raising=False)
    saved = TinyVGG().state_dict()
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(saved, cache / "vgg19-dcbb9e9d.pth")

    extractor = vgg_arch.VGGFeatureExtractor(["relu1_1"], vgg_type="vgg19")

    assert torch.equal(extractor.vgg_net.conv1_1.weight, saved["features.0.weight"])
    assert torch.equal(extractor.vgg_net.conv1_1.bias, saved["features.0.bias"])


@requires_patch("_fix_vgg_weights")
def test_vgg_weights_option_pointing_nowhere_names_that_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             tiny_vgg: None) -> None:
    monkeypatch.delenv(compat.RANDOM_INIT_ENV, raising=False)
    monkeypatch.setenv("SRODE_VGG_WEIGHTS", str(tmp_path / "nowhere.pth"))
    with pytest.raises(MissingWeightsError, match="nowhere.pth"):
        vgg_arch.VGGFeatureExtractor(["relu1_1"], vgg_type="vgg19")


# ---------------------------------------------------------------- optimizers and schedulers


@requires_patch("_fix_get_optimizer")
@fixed_and_upstream(NotImplementedError, "BaseModel.get_optimizer knows only Adam")
def test_get_optimizer_builds_adamw_and_sgd_by_name(upstream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    upstream_if(upstream, monkeypatch, BaseModel, "get_optimizer", "BaseModel.get_optimizer")
    model = bare_model()
    weight = nn.Parameter(torch.ones(2))

    adamw = model.get_optimizer("AdamW", [weight], 1e-3, weight_decay=0.1)
    sgd = model.get_optimizer("SGD", [weight], 0.1, momentum=0.9)

    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.1
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.9
    weight.grad = torch.ones(2)
    sgd.step()
    assert torch.allclose(weight.detach(), torch.full((2,), 0.9))  # w - lr * grad


@requires_patch("_fix_get_optimizer")
def test_unknown_optimizer_names_the_option_nearest_match_and_known_names() -> None:
    with pytest.raises(OptionError) as error:
        bare_model().get_optimizer("Adamm", [nn.Parameter(torch.ones(1))], 1e-3)
    message = str(error.value)
    assert "option 'train.optim_*.type'" in message
    assert "unknown optimizer 'Adamm'" in message
    assert "Did you mean: Adam" in message
    assert "AdamW" in message and "SGD" in message


def optimizer_model(scheduler: dict[str, Any], lr: float = 1.0) -> BaseModel:
    model = bare_model(train={"scheduler": scheduler})
    model.optimizers = [torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)]
    return model


@fixed_and_upstream(NotImplementedError, "BaseModel.setup_schedulers knows only MultiStep/CosineAnnealingRestart")
def test_setup_schedulers_accepts_a_torch_scheduler_by_class_name(upstream: bool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    upstream_if(upstream, monkeypatch, BaseModel, "setup_schedulers", "BaseModel.setup_schedulers")
    model = optimizer_model({"type": "StepLR", "step_size": 2, "gamma": 0.5})

    model.setup_schedulers()

    (scheduler,) = model.schedulers
    assert type(scheduler) is torch.optim.lr_scheduler.StepLR
    lrs = []
    for _ in range(4):
        model.optimizers[0].step()
        scheduler.step()
        lrs.append(model.optimizers[0].param_groups[0]["lr"])
    assert lrs == [1.0, 0.5, 0.5, 0.25]


def test_setup_schedulers_keeps_basicsr_schedulers_and_finds_plugin_ones() -> None:
    stock = optimizer_model({"type": "MultiStepLR", "milestones": [1], "gamma": 0.5})
    stock.setup_schedulers()
    assert type(stock.schedulers[0]) is MultiStepRestartLR

    from srode_plugins.lr_schedulers import ValidationLRDecay  # the core's own srode.lr_schedulers entry point

    plugin = optimizer_model({"type": "ValidationLRDecay", "patience": 2})
    plugin.setup_schedulers()
    assert type(plugin.schedulers[0]) is ValidationLRDecay

    unknown = optimizer_model({"type": "StepLRR"})
    with pytest.raises(UnknownComponentError, match="option 'train.scheduler.type'.*Did you mean: StepLR"):
        unknown.setup_schedulers()


# ---------------------------------------------------------------- distributed


@pytest.fixture
def recorded_process_group(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(dist_util.mp, "set_start_method", lambda *args, **kwargs: None)  # upstream sets 'spawn'
    return calls


@requires_patch("_fix_init_dist")
@fixed_and_upstream(ZeroDivisionError, "init_dist picks the GPU as RANK % device_count() and always uses nccl")
def test_init_dist_uses_gloo_without_cuda(upstream: bool, monkeypatch: pytest.MonkeyPatch,
                                          recorded_process_group: list[dict[str, Any]]) -> None:
    upstream_if(upstream, monkeypatch, dist_util, "init_dist", "dist_util.init_dist")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for name, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)

    dist_util.init_dist("pytorch")

    assert recorded_process_group == [{"backend": "gloo"}]


@requires_patch("_fix_init_dist")
@fixed_and_upstream(AssertionError, "init_dist picks the GPU as RANK % device_count(), wrong on multi-node")
def test_init_dist_with_cuda_uses_local_rank_and_nccl(upstream: bool, monkeypatch: pytest.MonkeyPatch,
                                                      recorded_process_group: list[dict[str, Any]]) -> None:
    upstream_if(upstream, monkeypatch, dist_util, "init_dist", "dist_util.init_dist")
    devices: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", devices.append)
    for name, value in {"RANK": "6", "LOCAL_RANK": "1", "WORLD_SIZE": "8"}.items():  # node 2 of 2, 4 GPUs each
        monkeypatch.setenv(name, value)

    dist_util.init_dist("pytorch")

    assert devices == [1]
    assert recorded_process_group == [{"backend": "nccl"}]


@requires_patch("_fix_init_dist")
def test_parse_options_calls_the_patched_init_dist() -> None:
    assert basicsr_options.init_dist is dist_util.init_dist is not compat.ORIGINALS["dist_util.init_dist"]


class RecordingDDP(nn.Module):
    def __init__(self, module: nn.Module, device_ids: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.module, self.device_ids, self.kwargs = module, device_ids, kwargs


@requires_patch("_fix_model_to_device")
@fixed_and_upstream((RuntimeError, AssertionError), "model_to_device passes device_ids=[torch.cuda.current_device()]")
def test_model_to_device_wraps_ddp_without_device_ids_on_cpu(upstream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    upstream_if(upstream, monkeypatch, BaseModel, "model_to_device", "BaseModel.model_to_device")
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", RecordingDDP)
    monkeypatch.setattr(base_model, "DistributedDataParallel", RecordingDDP)
    model = bare_model(dist=True, find_unused_parameters=True)
    net = nn.Linear(2, 2)

    wrapped = model.model_to_device(net)

    assert isinstance(wrapped, RecordingDDP)
    assert wrapped.module is net
    assert wrapped.device_ids is None
    assert wrapped.kwargs == {"find_unused_parameters": True}


# ---------------------------------------------------------------- Real-ESRGAN family on the CPU

REAL_ESRGAN_MODELS = {
    "RealESRNetModel": importlib.import_module("basicsr.models.realesrnet_model").RealESRNetModel,
    "RealESRGANModel": importlib.import_module("basicsr.models.realesrgan_model").RealESRGANModel,
}


def real_esrgan_model(name: str, **opt: Any) -> Any:
    network_g = {"type": "SRVGGNetCompact", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 4, "num_conv": 1,
                 "upscale": 2}
    return REAL_ESRGAN_MODELS[name]({"num_gpu": 0, "is_train": False, "dist": False, "scale": 2,
                                     "network_g": network_g, "path": {}, **opt})


@requires_patch("_fix_real_esrgan_on_cpu")
@pytest.mark.parametrize("name", sorted(REAL_ESRGAN_MODELS))
@fixed_and_upstream((RuntimeError, AssertionError), "RealESRNet/RealESRGANModel put DiffJPEG and USMSharp on .cuda()")
def test_real_esrgan_models_build_their_degradations_on_the_models_device(
        name: str, upstream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = REAL_ESRGAN_MODELS[name]
    upstream_if(upstream, monkeypatch, cls, "__init__", f"{name}.__init__")

    model = real_esrgan_model(name, queue_size=8)

    devices = {t.device for m in (model.jpeger, model.usm_sharpener) for t in [*m.buffers(), *m.parameters()]}
    assert devices == {model.device} == {torch.device("cpu")}
    assert model.queue_size == 8
    sharpened = model.usm_sharpener(torch.rand(1, 3, 32, 32))  # the sharpener runs where the batches are
    assert sharpened.shape == (1, 3, 32, 32) and sharpened.device == model.device


@requires_patch("_fix_real_esrgan_on_cpu")
@pytest.mark.parametrize("name", sorted(REAL_ESRGAN_MODELS))
@fixed_and_upstream((RuntimeError, AssertionError), "the training-pair queue is created with .cuda()")
def test_the_training_pair_queue_lives_on_the_batch_device_and_keeps_pairs_together(
        name: str, upstream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = REAL_ESRGAN_MODELS[name]
    upstream_if(upstream, monkeypatch, cls, "_dequeue_and_enqueue", f"{name}._dequeue_and_enqueue")
    model = real_esrgan_model(name, queue_size=4)
    batches = [(torch.full((2, 3, 4, 4), float(i)), torch.full((2, 3, 8, 8), float(i))) for i in range(3)]

    for lq, gt in batches:
        model.lq, model.gt = lq.clone(), gt.clone()
        model._dequeue_and_enqueue()

    assert model.queue_lr.device == model.queue_gt.device == torch.device("cpu")
    # the pool was full at the third batch: it handed out two queued pairs, each lq with its own gt
    lq_values, gt_values = model.lq.mean(dim=(1, 2, 3)), model.gt.mean(dim=(1, 2, 3))
    assert torch.equal(lq_values, gt_values) and set(lq_values.tolist()) <= {0.0, 1.0}
    assert sorted(model.queue_lr.mean(dim=(1, 2, 3)).tolist()).count(2.0) == 2


@requires_patch("_fix_real_esrgan_on_cpu")
def test_a_queue_size_that_is_not_a_whole_number_of_batches_names_the_option() -> None:
    model = real_esrgan_model("RealESRNetModel", queue_size=5, opt_file="realesrnet.yml")
    model.lq, model.gt = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 8, 8)
    with pytest.raises(OptionError, match=r"^realesrnet\.yml: option 'queue_size': value 5: .* batches of 2; "):
        model._dequeue_and_enqueue()


# ---------------------------------------------------------------- resume


def write_states(folder: Path, iterations: list[int], models: Path | None = None) -> None:
    """Training states and the generator weights of their iterations (in `models`, default `folder/../models`)."""
    models = models or folder.parent / "models"
    folder.mkdir(parents=True)
    models.mkdir(parents=True, exist_ok=True)
    for iteration in iterations:
        torch.save({"iter": iteration, "epoch": 1, "optimizers": [], "schedulers": [], "probe": torch.ones(1)},
                   folder / f"{iteration}.state")
        torch.save({"params": {"w": torch.ones(1)}}, models / f"net_g_{iteration}.pth")


def resume_opt(root: Path, *, auto_resume: bool, **path: Any) -> dict[str, Any]:
    return {"name": "exp", "auto_resume": auto_resume, "root_path": str(root), "network_g": {"type": "EDSR"},
            "path": {"models": str(root / "experiments" / "exp" / "models"), "resume_state": None, **path}}


@requires_patch("_fix_resume_on_cpu")
@fixed_and_upstream(AssertionError, "--auto_resume looks for experiments/ relative to the working directory")
def test_auto_resume_finds_the_newest_state_under_the_root_path_not_the_cwd(
        upstream: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    upstream_if(upstream, monkeypatch, upstream_train, "load_resume_state", "train.load_resume_state")
    root = tmp_path / "root"
    write_states(root / "experiments" / "exp" / "training_states", [5, 10, 9])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    opt = resume_opt(root, auto_resume=True)

    state = upstream_train.load_resume_state(opt)

    assert state is not None and state["iter"] == 10
    assert opt["path"]["resume_state"] == str(root / "experiments" / "exp" / "training_states" / "10.state")
    assert opt["path"]["pretrain_network_g"] == str(root / "experiments" / "exp" / "models" / "net_g_10.pth")


@requires_patch("_fix_resume_on_cpu")
def test_auto_resume_prefers_the_training_states_folder_the_run_writes_to(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    write_states(tmp_path / "root" / "experiments" / "exp" / "training_states", [3])
    write_states(tmp_path / "states", [7], models=tmp_path / "root" / "experiments" / "exp" / "models")
    monkeypatch.chdir(tmp_path)
    state = upstream_train.load_resume_state(
        resume_opt(tmp_path / "root", auto_resume=True, training_states=str(tmp_path / "states")))
    assert state is not None and state["iter"] == 7


@requires_patch("_fix_resume_on_cpu")
@fixed_and_upstream((RuntimeError, AssertionError), "load_resume_state maps storages to torch.cuda.current_device()")
def test_resume_state_loads_onto_the_cpu_without_cuda(upstream: bool, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    upstream_if(upstream, monkeypatch, upstream_train, "load_resume_state", "train.load_resume_state")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    write_states(tmp_path / "states", [5])
    opt = resume_opt(tmp_path, auto_resume=False, resume_state=str(tmp_path / "states" / "5.state"))

    state = upstream_train.load_resume_state(opt)

    assert state["iter"] == 5
    assert state["probe"].device.type == "cpu"
    assert opt["path"]["pretrain_network_g"].endswith("net_g_5.pth")


@pytest.fixture
def without_counter_allowed() -> Any:
    """torch.load(weights_only=True) as it is without srode: collections.Counter not an allowed global."""
    from torch import serialization

    allowed = serialization.get_safe_globals()

    def disallow() -> None:
        serialization.clear_safe_globals()
        serialization.add_safe_globals([g for g in allowed if g is not collections.Counter])

    yield disallow
    serialization.clear_safe_globals()
    serialization.add_safe_globals(allowed)


@fixed_and_upstream(pickle.UnpicklingError, "MultiStepRestartLR keeps a Counter, refused by weights_only loading")
def test_training_state_with_multistep_restart_lr_round_trips_through_default_torch_load(
        upstream: bool, tmp_path: Path, without_counter_allowed: Any) -> None:
    if upstream:
        if not compat.APPLIED["_fix_scheduler_state_loading"]:
            pytest.skip("this torch's weights-only loading accepts collections.Counter by itself")
        without_counter_allowed()
    model = bare_model(path={"training_states": str(tmp_path)})
    weight = nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([weight], lr=1.0)
    model.optimizers = [optimizer]
    model.schedulers = [MultiStepRestartLR(optimizer, milestones=[2, 4], gamma=0.5)]
    for _ in range(3):
        weight.grad = torch.ones(2)
        optimizer.step()
        model.schedulers[0].step()
    model.save_training_state(epoch=1, current_iter=3)

    state = torch.load(tmp_path / "3.state")  # torch's default: weights_only=True

    fresh_optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(2))], lr=1.0)  # built as on resume, then loaded
    fresh_scheduler = MultiStepRestartLR(fresh_optimizer, milestones=[9], gamma=0.1)
    fresh_optimizer.load_state_dict(state["optimizers"][0])
    fresh_scheduler.load_state_dict(state["schedulers"][0])
    assert state["iter"] == 3 and state["epoch"] == 1
    assert fresh_scheduler.milestones == collections.Counter([2, 4])
    assert fresh_scheduler.last_epoch == 3
    assert fresh_optimizer.param_groups[0]["lr"] == 0.5
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 3


# ---------------------------------------------------------------- atomic checkpoints


def saving_model(tmp_path: Path) -> BaseModel:
    return bare_model(path={"models": str(tmp_path), "training_states": str(tmp_path)})


def failing_torch_save(obj: Any, destination: Any, *args: Any, **kwargs: Any) -> None:
    """Writes a few bytes, then fails like a full disk."""
    if isinstance(destination, (str, os.PathLike)):
        Path(destination).write_bytes(b"trunc")
    else:
        destination.write(b"trunc")
    raise OSError("No space left on device")


@fixed_and_upstream(AssertionError, "save_network writes the checkpoint in place (truncated on a crash)")
def test_failed_network_save_keeps_the_previous_checkpoint_and_no_temp_file(
        upstream: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    upstream_if(upstream, monkeypatch, BaseModel, "save_network", "BaseModel.save_network")
    monkeypatch.setattr(base_model, "time", SimpleNamespace(sleep=lambda seconds: None))  # upstream retry pauses
    model = saving_model(tmp_path)
    net = nn.Linear(2, 2)
    model.save_network(net, "net_g", 5)
    checkpoint = tmp_path / "net_g_5.pth"
    before = checkpoint.read_bytes()

    monkeypatch.setattr(torch, "save", failing_torch_save)
    with torch.no_grad():
        net.weight.add_(1.0)
    try:
        model.save_network(net, "net_g", 5)
    except CheckpointError:  # srode: one line naming the file; upstream retries and only logs
        pass

    assert checkpoint.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net_g_5.pth"]


def test_network_save_strips_module_prefix_and_names_latest(tmp_path: Path) -> None:
    model = saving_model(tmp_path)
    net = nn.Linear(2, 2)
    model.save_network(nn.DataParallel(net), "net_g", -1)
    saved = torch.load(tmp_path / "net_g_latest.pth")
    assert set(saved) == {"params"}
    assert set(saved["params"]) == {"weight", "bias"}
    assert torch.equal(saved["params"]["weight"], net.weight)


# ---------------------------------------------------------------- compiled networks


class CompiledStandIn(nn.Module):
    """What torch.compile returns (OptimizedModule), as far as saving goes: the original module under `_orig_mod`.

    A stand-in because importing torch._dynamo alone takes seconds on a small CPU.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._orig_mod = module


@fixed_and_upstream(AssertionError, "get_bare_model does not unwrap torch.compile's OptimizedModule")
def test_get_bare_model_unwraps_compiled_networks(upstream: bool, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    upstream_if(upstream, monkeypatch, BaseModel, "get_bare_model", "BaseModel.get_bare_model")
    model = saving_model(tmp_path)
    net = nn.Linear(2, 2)

    assert model.get_bare_model(CompiledStandIn(net)) is net
    assert model.get_bare_model(nn.DataParallel(CompiledStandIn(net))) is net
    model.save_network(CompiledStandIn(net), "net_g", 1)
    assert set(torch.load(tmp_path / "net_g_1.pth")["params"]) == {"weight", "bias"}


# ---------------------------------------------------------------- loading networks


class CheckpointNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3)
        self.tail = nn.Conv2d(4, 3, 3)


class OtherNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 4, 3)
        self.body = nn.Conv2d(4, 4, 3)


@fixed_and_upstream(RuntimeError, "load_network ends in torch's RuntimeError listing every key")
def test_load_network_mismatch_names_missing_unexpected_and_misshaped_keys(
        upstream: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    upstream_if(upstream, monkeypatch, BaseModel, "load_network", "BaseModel.load_network")
    checkpoint = tmp_path / "net_g_5.pth"
    torch.save({"params": CheckpointNet().state_dict()}, checkpoint)

    with pytest.raises(OptionError) as error:
        bare_model().load_network(OtherNet(), str(checkpoint), strict=True, param_key="params")

    message = str(error.value)
    assert "option 'path.pretrain_network_*'" in message
    assert str(checkpoint) in message
    assert "2 missing: head.bias, head.weight" in message
    assert "2 unexpected: tail.bias, tail.weight" in message
    assert "1 shape mismatch: body.weight: checkpoint (4, 3, 3, 3) vs network (4, 4, 3, 3)" in message
    assert "strict_load_g: false" in message


def test_load_network_loads_a_matching_checkpoint_and_names_a_missing_file(tmp_path: Path) -> None:
    source, target = CheckpointNet(), CheckpointNet()
    torch.save({"params_ema": source.state_dict()}, tmp_path / "ok.pth")
    bare_model().load_network(target, str(tmp_path / "ok.pth"), strict=True, param_key="params_ema")
    assert torch.equal(target.tail.weight, source.tail.weight)
    with pytest.raises(OptionError, match="nothing.pth' does not exist"):
        bare_model().load_network(target, str(tmp_path / "nothing.pth"))


# ---------------------------------------------------------------- apply(): explicit, idempotent, probe-driven


def test_apply_twice_patches_once() -> None:
    before = (Registry._do_register, BaseModel.get_optimizer, BaseModel.save_network, basicsr_options.ordered_yaml)
    compat.apply()
    compat.apply()
    after = (Registry._do_register, BaseModel.get_optimizer, BaseModel.save_network, basicsr_options.ordered_yaml)
    assert after == before and all(getattr(f, "_srode", False) for f in after)


@pytest.mark.parametrize(("owner", "attribute", "fix"), [
    (BaseModel, "get_optimizer", "_fix_get_optimizer"),
    (basicsr_options, "ordered_yaml", "_fix_ordered_yaml"),
    (Registry, "_do_register", "_fix_registry"),
])
def test_a_probe_leaves_an_upstream_that_behaves_alone(owner: Any, attribute: str, fix: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # an upstream that already behaves: srode's function without its marker stands in for it
    patched = getattr(owner, attribute)
    monkeypatch.setattr(owner, attribute, lambda *args, **kwargs: patched(*args, **kwargs))
    fixed_upstream = getattr(owner, attribute)
    assert getattr(compat, fix)() is False
    assert getattr(owner, attribute) is fixed_upstream


@pytest.mark.slow  # a fresh interpreter importing torch
def test_importing_compat_changes_nothing_until_apply(run_python: Any) -> None:
    code = ("import sys\nimport srode_plugins.compat as c\nassert not c.APPLIED and 'basicsr' not in sys.modules\n"
            "c.apply()\nimport basicsr.utils.registry as r\nassert getattr(r.Registry._do_register, '_srode', False)\n"
            "print('ok')\n")
    result = run_python(["-c", code])
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
