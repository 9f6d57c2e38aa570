"""Every fix srode needs in upstream BasicSR 1.4.2 (PyPI), in one place.

Each `_fix_*` function says what breaks and returns whether its patch is in place. Where a cheap behaviour probe
can tell whether upstream still has the problem (run the upstream code on a tiny input and watch it fail), the
fix patches only then, so it is a no-op once upstream is fixed; the others change behaviour srode needs on
every machine (CPU / gloo, no downloads) and are always applied. Every patched function carries a `_srode`
marker, so running a fix twice patches once: idempotent by construction, no module-level guard.
`apply()` runs them all; nothing happens on import. The entry points call it: the CLI, `srode_plugins.api`
(a plugin's import), the engine, and the modules that import basicsr.
Each fix has a test in tests/test_core_compat.py that fails without it.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from srode_plugins.errors import DuplicateComponentError, MissingWeightsError, OptionError
from srode_plugins.weights import resolve_weights

APPLIED: dict[str, bool] = {}
ORIGINALS: dict[str, Any] = {}

VGG_WEIGHT_FILES = {"vgg19": "vgg19-dcbb9e9d.pth", "vgg16": "vgg16-397923af.pth", "vgg19_bn": "vgg19_bn-c79401a0.pth"}
RANDOM_INIT_ENV = "SRODE_RANDOM_INIT_PRETRAINED"


def _ours(obj: Any) -> bool:
    return bool(getattr(obj, "_srode", False))


def _patch(owner: Any, attribute: str, replacement: Any, key: str) -> bool:
    """Put `replacement` at `owner.attribute` (once: a second call finds the marker), keeping the original."""
    current = getattr(owner, attribute)
    if _ours(current):
        return True
    ORIGINALS.setdefault(key, current)
    replacement._srode = True
    setattr(owner, attribute, replacement)
    return True


def _raises(call: Callable[[], Any], *errors: type[BaseException]) -> bool:
    """Whether `call()` raises one of `errors` (the probe of an upstream bug)."""
    try:
        call()
    except errors:
        return True
    return False


def _fix_functional_tensor() -> bool:
    # torchvision 0.17 removed torchvision.transforms.functional_tensor; basicsr.data.degradations imports
    # rgb_to_grayscale from it, so `import basicsr` fails. Alias the module to its private successor.
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        if importlib.util.find_spec("torchvision.transforms.functional_tensor") is not None:
            return False
    except ModuleNotFoundError:
        pass
    successor = importlib.import_module("torchvision.transforms._functional_tensor")
    sys.modules["torchvision.transforms.functional_tensor"] = successor
    return True


def _fix_registry() -> bool:
    # Registry._do_register uses a bare `assert` on duplicates (silent under `python -O`, no hint which
    # object won) and Registry.get `print`s on a fallback lookup. Raise a named error; stay quiet.
    from basicsr.utils.registry import Registry

    if _ours(Registry._do_register):
        return True
    probe = Registry("srode-probe")
    probe._do_register("probe", 1)
    try:
        probe._do_register("probe", 2)
        broken = probe._obj_map["probe"] == 2  # the duplicate silently replaced the first (`python -O`)
    except AssertionError:
        broken = True
    except Exception:  # an upstream that already refuses duplicates with its own error
        broken = False
    if not broken:
        return False

    def _do_register(self: Registry, name: str, obj: Any, suffix: str | None = None) -> None:
        if isinstance(suffix, str):
            name = name + "_" + suffix
        existing = self._obj_map.get(name)
        if existing is not None and existing is not obj:
            raise DuplicateComponentError(
                f"Two objects are registered as '{name}' in BasicSR's '{self._name}' registry: "
                f"{_qualname(existing)} and {_qualname(obj)}. Rename one of them."
            )
        self._obj_map[name] = obj

    def get(self: Registry, name: str, suffix: str = "basicsr") -> Any:
        found = self._obj_map.get(name)
        if found is None:
            found = self._obj_map.get(name + "_" + suffix)
        if found is None:
            raise KeyError(f"No object named '{name}' found in '{self._name}' registry!")
        return found

    _patch(Registry, "get", get, "Registry.get")
    return _patch(Registry, "_do_register", _do_register, "Registry._do_register")


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


@contextlib.contextmanager
def _yaml_tables_restored(yaml: Any) -> Iterator[None]:
    """Put back the constructor / representer tables of yaml's own loaders and dumpers on exit."""
    classes = [getattr(yaml, n) for n in ("Loader", "CLoader", "Dumper", "CDumper") if hasattr(yaml, n)]
    saved = {(cls, table): cls.__dict__.get(table) for cls in classes
             for table in ("yaml_constructors", "yaml_representers")}
    try:
        yield
    finally:
        for (cls, table), value in saved.items():
            if value is None:
                if table in cls.__dict__:
                    delattr(cls, table)
            else:
                setattr(cls, table, value)


def _fix_ordered_yaml() -> bool:
    # ordered_yaml() adds an OrderedDict constructor to yaml.CLoader / yaml.Loader themselves, changing how
    # every other library's yaml.load behaves in the process. Return private subclasses instead.
    import yaml
    from basicsr.utils import options

    if _ours(options.ordered_yaml):
        return True
    with _yaml_tables_restored(yaml):  # the probe itself would otherwise change yaml's loaders
        loader, _ = options.ordered_yaml()
    if loader not in (yaml.Loader, getattr(yaml, "CLoader", None)):
        return False  # upstream returns its own classes: yaml's stay untouched
    base_loader = getattr(yaml, "CLoader", yaml.Loader)
    base_dumper = getattr(yaml, "CDumper", yaml.Dumper)

    class OrderedLoader(base_loader):  # type: ignore[misc, valid-type]
        pass

    class OrderedDumper(base_dumper):  # type: ignore[misc, valid-type]
        pass

    mapping_tag = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG
    OrderedLoader.add_constructor(
        mapping_tag, lambda loader, node: collections.OrderedDict(loader.construct_pairs(node))
    )
    OrderedDumper.add_representer(
        collections.OrderedDict, lambda dumper, data: dumper.represent_dict(data.items())
    )

    def ordered_yaml() -> tuple[type, type]:
        return OrderedLoader, OrderedDumper

    return _patch(options, "ordered_yaml", ordered_yaml, "options.ordered_yaml")


def _fix_perceptual_l2() -> bool:
    # PerceptualLoss(criterion='l2') calls torch.nn.L2loss, which never existed (AttributeError).
    from basicsr.losses import basic_loss

    init = basic_loss.PerceptualLoss.__init__
    if _ours(init):
        return True
    extractor = basic_loss.VGGFeatureExtractor
    basic_loss.VGGFeatureExtractor = lambda **kwargs: None  # the probe needs no VGG
    try:
        broken = _raises(lambda: basic_loss.PerceptualLoss({"conv1_1": 1.0}, criterion="l2"), AttributeError)
    finally:
        basic_loss.VGGFeatureExtractor = extractor
    if not broken:
        return False

    def __init__(self: Any, *args: Any, criterion: str = "l1", **kwargs: Any) -> None:
        init(self, *args, criterion="l1" if criterion == "l2" else criterion, **kwargs)
        if criterion == "l2":
            import torch

            self.criterion_type = "l2"
            self.criterion = torch.nn.MSELoss()

    return _patch(basic_loss.PerceptualLoss, "__init__", __init__, "PerceptualLoss.__init__")


def _fix_get_optimizer() -> bool:
    # BaseModel.get_optimizer knows only Adam. Accept any torch.optim optimizer by class name (AdamW, SGD, ...).
    from basicsr.models.base_model import BaseModel

    if _ours(BaseModel.get_optimizer):
        return True
    import torch

    param = [torch.zeros(1, requires_grad=True)]
    if not _raises(lambda: BaseModel.get_optimizer(None, "SGD", param, lr=0.1), NotImplementedError):
        return False

    def get_optimizer(self: Any, optim_type: str, params: Any, lr: float, **kwargs: Any) -> Any:
        import torch

        from srode_plugins.errors import OptionError

        optimizer_class = getattr(torch.optim, optim_type, None)
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer)):
            known = sorted(
                n for n, c in vars(torch.optim).items() if isinstance(c, type) and issubclass(c, torch.optim.Optimizer)
                and c is not torch.optim.Optimizer
            )
            close = difflib.get_close_matches(str(optim_type), known, n=3, cutoff=0.5)
            did_you_mean = f" Did you mean: {', '.join(close)}?" if close else ""
            raise OptionError(
                f"unknown optimizer '{optim_type}'.{did_you_mean} Known (torch.optim): {', '.join(known)}.",
                key="train.optim_*.type",
            )
        return optimizer_class(params, lr=lr, **kwargs)

    return _patch(BaseModel, "get_optimizer", get_optimizer, "BaseModel.get_optimizer")


class _LocalVGGFactory:
    """Stands in for `torchvision.models.vgg` inside basicsr.archs.vgg_arch.

    VGGFeatureExtractor calls `vgg.vgg19(pretrained=True)`: torchvision no longer accepts `pretrained`
    (TypeError) and would download the weights. Here the weights come from disk only.
    """

    def __init__(self, torchvision_vgg: Any, legacy_path: str) -> None:
        self._vgg = torchvision_vgg
        self._legacy_path = legacy_path

    def __getattr__(self, vgg_type: str) -> Callable[..., Any]:
        builder = getattr(self._vgg, vgg_type)

        def build(pretrained: bool = False, **kwargs: Any) -> Any:
            if not pretrained or os.environ.get(RANDOM_INIT_ENV) == "1":
                return builder(weights=None, **kwargs)
            # Find the file before building the network: a missing file fails at once, not after seconds of init.
            weights = resolve_weights(
                os.environ.get("SRODE_VGG_WEIGHTS"),
                what=f"VGG perceptual loss ({vgg_type})",
                option_key="SRODE_VGG_WEIGHTS (environment)",
                default_name=VGG_WEIGHT_FILES.get(vgg_type, f"{vgg_type}.pth"),
                disable_hint="remove 'train.perceptual_opt' from the option file to train without the perceptual loss",
                extra_candidates=(Path(self._legacy_path).resolve(),),
            )
            import torch

            net = builder(weights=None, **kwargs)
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            return net

        return build


def _fix_vgg_weights() -> bool:
    # See _LocalVGGFactory. Always applied: srode never downloads, whatever upstream's torchvision call does.
    from basicsr.archs import vgg_arch

    if isinstance(vgg_arch.vgg, _LocalVGGFactory):
        return True
    ORIGINALS["vgg_arch.vgg"] = vgg_arch.vgg
    vgg_arch.vgg = _LocalVGGFactory(vgg_arch.vgg, vgg_arch.VGG_PRETRAIN_PATH)
    return True


def _fix_init_dist() -> bool:
    # init_dist('pytorch') picks the GPU as RANK % device_count (ZeroDivisionError on CPU, wrong GPU on
    # multi-node) and always uses nccl. Use LOCAL_RANK, and gloo when CUDA is absent.
    # Always applied (srode's CPU/gloo DDP); a probe would need a process group.
    from basicsr.utils import dist_util, options

    if _ours(dist_util.init_dist):
        return True

    def init_dist(launcher: str, backend: str | None = None, **kwargs: Any) -> None:
        import torch
        import torch.distributed as dist

        if launcher not in ("pytorch", "slurm"):
            raise ValueError(f"Invalid launcher type: {launcher}")
        if launcher == "slurm":
            ORIGINALS["dist_util.init_dist"](launcher, backend=backend or "nccl", **kwargs)
            return
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group(backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"), **kwargs)

    _patch(dist_util, "init_dist", init_dist, "dist_util.init_dist")
    options.init_dist = init_dist
    return True


def _fix_model_to_device() -> bool:
    # BaseModel.model_to_device wraps DDP with device_ids=[torch.cuda.current_device()], which fails on a
    # CPU (gloo) run. On CPU, DDP takes device_ids=None.
    # Always applied (srode's CPU/gloo DDP); a probe would need a process group.
    from basicsr.models.base_model import BaseModel

    def model_to_device(self: Any, net: Any) -> Any:
        from torch.nn.parallel import DataParallel, DistributedDataParallel

        net = net.to(self.device)
        if self.opt["dist"]:
            find_unused = self.opt.get("find_unused_parameters", False)
            device_ids = [self.device.index or 0] if self.device.type == "cuda" else None
            return DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=find_unused)
        if self.opt["num_gpu"] > 1:
            return DataParallel(net)
        return net

    return _patch(BaseModel, "model_to_device", model_to_device, "BaseModel.model_to_device")


def _fix_real_esrgan_on_cpu() -> bool:
    # RealESRNetModel / RealESRGANModel put their JPEG simulator and USM sharpener on `.cuda()` when built, and
    # their training-pair queue on `.cuda()` when first filled: the whole Real-ESRGAN family fails without CUDA
    # ("Found no NVIDIA driver") and lands on the wrong device when num_gpu is 0. Both go to the model's device.
    from basicsr.models.realesrgan_model import RealESRGANModel
    from basicsr.models.realesrnet_model import RealESRNetModel

    # Always applied: probing would build the model, which is what fails without CUDA.
    for cls in (RealESRNetModel, RealESRGANModel):
        _patch(cls, "__init__", _degradations_on_model_device(cls), f"{cls.__name__}.__init__")
        if not _ours(cls._dequeue_and_enqueue):
            _patch(cls, "_dequeue_and_enqueue", _queue_on_batch_device(cls._dequeue_and_enqueue),
                   f"{cls.__name__}._dequeue_and_enqueue")
    return True


def _degradations_on_model_device(cls: type) -> Callable[..., None]:
    def __init__(self: Any, opt: dict[str, Any]) -> None:
        from basicsr.utils import DiffJPEG, USMSharp

        super(cls, self).__init__(opt)  # SRModel / SRGANModel: the networks, losses and optimizers
        self.jpeger = DiffJPEG(differentiable=False).to(self.device)
        self.usm_sharpener = USMSharp().to(self.device)
        self.queue_size = opt.get("queue_size", 180)

    return __init__


def _queue_on_batch_device(original: Callable[[Any], None]) -> Callable[[Any], None]:
    # Upstream creates the queue only when it has none, so creating it here (on the batch's device) first leaves
    # the rest of upstream's pool logic unchanged.
    def _dequeue_and_enqueue(self: Any) -> None:
        if not hasattr(self, "queue_lr"):
            if self.queue_size % self.lq.size(0):
                raise OptionError(f"value {self.queue_size}: the training-pair queue must hold a whole number of "
                                  f"batches of {self.lq.size(0)}; use a multiple of datasets.train.batch_size_per_gpu",
                                  file=self.opt.get("opt_file"), key="queue_size")
            self.queue_lr = self.lq.new_zeros(self.queue_size, *self.lq.shape[1:])
            self.queue_gt = self.gt.new_zeros(self.queue_size, *self.gt.shape[1:])
            self.queue_ptr = 0
        original(self)

    return _dequeue_and_enqueue


def _fix_resume_on_cpu() -> bool:
    # basicsr.train.load_resume_state maps the state with torch.cuda.current_device() (fails without CUDA)
    # and --auto_resume looks for experiments/ relative to the working directory, not where the states are
    # written (path.training_states, which parse_options derives from the root path).
    # Always applied: srode's checkpoint toolbox reads the states (fallbacks, clear errors).
    import basicsr.train as upstream_train

    def load_resume_state(opt: dict) -> dict | None:
        import torch

        from srode_plugins.checkpoints import load_resume_state as load_state

        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
        return load_state(opt, device)

    return _patch(upstream_train, "load_resume_state", load_resume_state, "train.load_resume_state")


def _fix_scheduler_state_loading() -> bool:
    # torch >= 2.6 loads with weights_only=True by default; MultiStepRestartLR keeps its milestones in a
    # collections.Counter, which older weights-only unpicklers refuse, so a saved training state cannot be
    # loaded back. Allow Counter when this torch does not already.
    import io
    import pickle

    import torch

    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:
        return False
    probe = io.BytesIO()
    torch.save(collections.Counter([1]), probe)
    probe.seek(0)
    try:
        torch.load(probe, weights_only=True)
        return False
    except pickle.UnpicklingError:
        add_safe_globals([collections.Counter])
        return True


# ---------------------------------------------------------------- extensions (behaviour srode adds)
# Not upstream bugs: the seams the engine needs, kept beside the fixes so every patch is in one place.


def _extend_atomic_saves() -> bool:
    # BaseModel.save_network / save_training_state write with a bare torch.save (retry loop): a crash
    # mid-write leaves a truncated file. Write through a temp file + rename; the training state also
    # carries the engine's own state (GradScaler, guards) when the engine provides it. `logger.save_format:
    # safetensors` writes the networks as .safetensors (the training state stays a torch file: optimizers).
    from basicsr.models.base_model import BaseModel

    from srode_plugins.checkpoints import atomic_save, atomic_save_safetensors

    if _ours(BaseModel.save_network):
        return True

    def save_network(self: Any, net: Any, net_label: str, current_iter: int, param_key: Any = "params") -> None:
        from basicsr.utils.dist_util import get_dist_info

        if get_dist_info()[0] != 0:
            return
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(keys):
            raise ValueError("save_network: the lengths of net and param_key differ")
        payload = {}
        for net_, key in zip(nets, keys):
            state = self.get_bare_model(net_).state_dict()
            payload[key] = {k.removeprefix("module."): v.detach().cpu() for k, v in state.items()}
        label = "latest" if current_iter == -1 else current_iter
        folder = Path(self.opt["path"]["models"])
        if (self.opt.get("logger") or {}).get("save_format", "pth") == "safetensors":
            atomic_save_safetensors(payload, folder / f"{net_label}_{label}.safetensors")
        else:
            atomic_save(payload, folder / f"{net_label}_{label}.pth")

    def save_training_state(self: Any, epoch: int, current_iter: int) -> None:
        from basicsr.utils.dist_util import get_dist_info

        if current_iter == -1 or get_dist_info()[0] != 0:
            return
        state = {
            "epoch": epoch,
            "iter": current_iter,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }
        extra = getattr(self, "srode_extra_state", None)
        if callable(extra):
            state["srode"] = extra()
        atomic_save(state, Path(self.opt["path"]["training_states"]) / f"{current_iter}.state")

    _patch(BaseModel, "save_training_state", save_training_state, "BaseModel.save_training_state")
    return _patch(BaseModel, "save_network", save_network, "BaseModel.save_network")


def _extend_bare_model() -> bool:
    # `train.compile` wraps networks in torch.compile's OptimizedModule; saving and EMA must see the
    # original module (state-dict keys without '_orig_mod.').
    from basicsr.models.base_model import BaseModel

    if _ours(BaseModel.get_bare_model):
        return True
    original = BaseModel.get_bare_model

    def get_bare_model(self: Any, net: Any) -> Any:
        net = original(self, net)
        return getattr(net, "_orig_mod", net)

    return _patch(BaseModel, "get_bare_model", get_bare_model, "BaseModel.get_bare_model")


def _extend_schedulers() -> bool:
    # BaseModel.setup_schedulers knows two schedulers and fails (KeyError) without one. Also accept srode /
    # plugin LR schedulers (entry-point group srode.lr_schedulers), any torch.optim.lr_scheduler class by
    # name, and no scheduler at all (constant learning rate).
    from basicsr.models.base_model import BaseModel

    if _ours(BaseModel.setup_schedulers):
        return True
    original = BaseModel.setup_schedulers

    def setup_schedulers(self: Any) -> None:
        import torch

        from srode_plugins.components import STOCK_LR_SCHEDULERS, load_component

        if not self.opt["train"].get("scheduler"):
            return  # no `train.scheduler`: constant learning rate
        scheduler_opt = dict(self.opt["train"]["scheduler"])
        name = scheduler_opt.pop("type")
        if name in STOCK_LR_SCHEDULERS:
            original(self)
            return
        factory = getattr(torch.optim.lr_scheduler, name, None)
        if not isinstance(factory, type):
            factory = load_component("lr_schedulers", name, key="train.scheduler.type")
        for optimizer in self.optimizers:
            self.schedulers.append(factory(optimizer, **scheduler_opt))

    return _patch(BaseModel, "setup_schedulers", setup_schedulers, "BaseModel.setup_schedulers")


def _extend_load_network_errors() -> bool:
    # BaseModel.load_network with strict=True ends in torch's long RuntimeError listing every key. Name the
    # option and the checkpoint, and list the first few missing / unexpected / mis-shaped keys.
    from basicsr.models.base_model import BaseModel

    if _ours(BaseModel.load_network):
        return True
    original = BaseModel.load_network

    def load_network(self: Any, net: Any, load_path: str, strict: bool = True, param_key: str = "params") -> None:
        from basicsr.utils import get_root_logger

        from srode_plugins.checkpoints import load_checkpoint, load_network_weights

        if not strict:  # upstream's non-strict path (drops mis-shaped keys with a warning)
            try:
                original(self, net, load_path, strict, param_key)
            except Exception:
                # an empty, truncated or corrupt file: one line naming it instead of torch.load's traceback
                load_checkpoint(load_path, what="network weights", key="path.pretrain_network_*",
                                fix="replace it with a complete .pth file")
                raise
            return
        bare = self.get_bare_model(net)
        load_network_weights(bare, load_path, option_key="path.pretrain_network_*", param_key=param_key)
        get_root_logger().info(f"Loaded {bare.__class__.__name__} from {load_path} (param key {param_key}).")

    return _patch(BaseModel, "load_network", load_network, "BaseModel.load_network")


_FIXES_BEFORE_IMPORT: tuple[Callable[[], bool], ...] = (_fix_functional_tensor,)
_FIXES: tuple[Callable[[], bool], ...] = (
    _fix_registry,
    _fix_ordered_yaml,
    _fix_perceptual_l2,
    _fix_get_optimizer,
    _fix_vgg_weights,
    _fix_init_dist,
    _fix_model_to_device,
    _fix_real_esrgan_on_cpu,
    _fix_resume_on_cpu,
    _fix_scheduler_state_loading,
    _extend_atomic_saves,
    _extend_bare_model,
    _extend_schedulers,
    _extend_load_network_errors,
)


def apply() -> dict[str, bool]:
    """Apply every fix (each is idempotent: a second call changes nothing). Returns {fix name: patch in place?}."""
    for fix in _FIXES_BEFORE_IMPORT:
        APPLIED[fix.__name__] = fix()
    importlib.import_module("basicsr")
    for fix in _FIXES:
        APPLIED[fix.__name__] = fix()
    return APPLIED


__all__ = ["APPLIED", "ORIGINALS", "MissingWeightsError", "apply"]
