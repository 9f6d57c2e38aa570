"""Option files: loading, overrides, validation helpers and path resolution, with errors naming file, key and value."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from srode_plugins import options
from srode_plugins.data import demo
from srode_plugins.data.demo import DemoPaths
from srode_plugins.errors import OptionError
from srode_plugins.options import OptionFile


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def option_file(tmp_path: Path, opt: dict[str, Any]) -> OptionFile:
    file = write(tmp_path / "options" / "train.yml", yaml.safe_dump(opt))
    return options.load(file)


# ---------------------------------------------------------------- loading


def test_yaml_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    file = write(tmp_path / "bad.yml", "name: demo\nnetwork_g:\n  type: EDSR\n   num_feat: 64\n")
    with pytest.raises(OptionError) as error:
        options.load(file)
    # the stray ':' of the over-indented line 4 ("   num_feat: 64") is its 12th character
    assert str(error.value) == (f"{file}: YAML syntax error at line 4, column 12: mapping values are not allowed "
                                f"here. Fix the file and run again.")
    assert error.value.file == str(file)


def test_missing_option_file_and_non_mapping_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match=r"nope\.yml: option file not found \(cwd: .*\)\. Check the path given"):
        options.load(tmp_path / "nope.yml")
    with pytest.raises(OptionError, match=r"list\.yml: an option file must be a YAML mapping"):
        options.load(write(tmp_path / "list.yml", "- a\n- b\n"))


def test_exponent_numbers_load_as_floats_without_changing_pyyaml(tmp_path: Path) -> None:
    opts = options.load(write(tmp_path / "o.yml", "lr: 2e-4\ntagged: !!float 1e-8\nwhole: 3\nname: 1e3x\n"))
    assert opts.opt == {"lr": 2e-4, "tagged": 1e-8, "whole": 3, "name": "1e3x"}
    assert type(opts.opt["lr"]) is float
    assert yaml.safe_load("lr: 2e-4") == {"lr": "2e-4"}  # PyYAML's own SafeLoader is untouched


def test_load_keeps_the_resolved_file_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "o.yml", "name: x\n")
    monkeypatch.chdir(tmp_path)
    assert options.load("o.yml").file == tmp_path / "o.yml"


# ---------------------------------------------------------------- --set overrides


def test_set_overrides_parse_values_as_yaml_and_create_missing_mappings(tmp_path: Path) -> None:
    opts = option_file(tmp_path, {"name": "x", "train": {"total_iter": 100, "optim_g": {"lr": 1.0}}})

    for entry in ("train.total_iter=3", "train.optim_g.lr=1e-4", "train.optim_g.betas=[0.9, 0.99]",
                  "val.save_img=false", "path.pretrain_network_g=~", "logger:print_freq=1", "name=a=b", "tag="):
        options.apply_override(opts, entry)

    assert opts.opt == {
        "name": "a=b",
        "tag": "",
        "train": {"total_iter": 3, "optim_g": {"lr": 1e-4, "betas": [0.9, 0.99]}},
        "val": {"save_img": False},
        "path": {"pretrain_network_g": None},
        "logger": {"print_freq": 1},
    }


def test_load_applies_overrides_in_order(tmp_path: Path) -> None:
    file = write(tmp_path / "o.yml", "train:\n  total_iter: 100\n")
    opts = options.load(file, overrides=["train.total_iter=5", "train.total_iter=7"])
    assert opts.opt["train"]["total_iter"] == 7


@pytest.mark.parametrize(("entry", "message"), [
    ("train.total_iter", "override 'train.total_iter' must look like key.path=value, e.g. train.total_iter=100"),
    ("=3", "override '=3' names no key"),
    ("name.first=1", "option 'name.first': cannot set 'name.first': 'name' is not a mapping"),
])
def test_malformed_overrides_say_what_is_wrong(tmp_path: Path, entry: str, message: str) -> None:
    opts = option_file(tmp_path, {"name": "x"})
    with pytest.raises(OptionError) as error:
        options.apply_override(opts, entry)
    assert str(error.value) == f"{opts.file}: {message}"


# ---------------------------------------------------------------- paths


def test_missing_dataset_folder_names_the_key_path_value_and_fixes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    opts = option_file(tmp_path, {"datasets": {"train": {"type": "PairedImageDataset",
                                                         "dataroot_gt": "datasets/DIV2K/HR"}}})
    with pytest.raises(OptionError) as error:
        options.resolve_dataset_paths(opts)
    message = str(error.value)
    assert message.startswith(f"{opts.file}: option 'datasets.train.dataroot_gt': path 'datasets/DIV2K/HR' does "
                              f"not exist")
    assert f"'{tmp_path / 'datasets/DIV2K/HR'}' or '{tmp_path / 'options' / 'datasets/DIV2K/HR'}'" in message
    assert "`basicsr data prepare`" in message and "--demo" in message
    assert error.value.key == "datasets.train.dataroot_gt"


def test_relative_paths_resolve_against_the_cwd_then_the_option_file(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "options" / "data" / "hr").mkdir(parents=True)
    (tmp_path / "options" / "data" / "lr").mkdir(parents=True)
    (tmp_path / "work" / "data" / "lr").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    opts = option_file(tmp_path, {"datasets": {"val": {"dataroot_gt": "data/hr", "dataroot_lq": ["data/lr", "data/hr"],
                                                       "name": "v"}}})

    options.resolve_dataset_paths(opts)

    dataset = opts.opt["datasets"]["val"]
    assert dataset["dataroot_gt"] == str(tmp_path / "options" / "data" / "hr")
    assert dataset["dataroot_lq"] == [str(tmp_path / "work" / "data" / "lr"), str(tmp_path / "options" / "data" / "hr")]
    assert dataset["name"] == "v"


def test_a_missing_entry_of_a_dataroot_list_is_named_by_its_index(tmp_path: Path) -> None:
    opts = option_file(tmp_path, {"datasets": {"train": {"dataroot_gt": [str(tmp_path), str(tmp_path / "gone")]}}})
    with pytest.raises(OptionError, match=r"option 'datasets\.train\.dataroot_gt\.1': path '.*gone' does not exist"):
        options.resolve_dataset_paths(opts)


def test_a_dataset_that_is_not_a_mapping_is_named(tmp_path: Path) -> None:
    opts = option_file(tmp_path, {"datasets": {"train": "DIV2K"}})
    with pytest.raises(OptionError, match=r"option 'datasets\.train': each dataset must be a mapping"):
        options.resolve_dataset_paths(opts)


def test_missing_pretrained_network_is_named_and_null_is_ignored(tmp_path: Path) -> None:
    opts = option_file(tmp_path, {"path": {"pretrain_network_g": "experiments/x/net_g_5.pth",
                                           "pretrain_network_d": None, "strict_load_g": True}})
    with pytest.raises(OptionError, match=r"option 'path\.pretrain_network_g': path 'experiments/x/net_g_5\.pth'"):
        options.resolve_pretrained_paths(opts)
    weights = write(tmp_path / "net_g_5.pth", "")
    opts.opt["path"]["pretrain_network_g"] = str(weights)
    options.resolve_pretrained_paths(opts)
    assert opts.opt["path"] == {"pretrain_network_g": str(weights), "pretrain_network_d": None, "strict_load_g": True}


@pytest.mark.parametrize(("key", "value", "source"), [
    ("pretrain_network_g", "experiments/001_MSRResNet_x4_f64b16_DIV2K_1000k_B16G1_wandb/models/net_g_1000000.pth",
     "train the experiment '001_MSRResNet_x4_f64b16_DIV2K_1000k_B16G1_wandb' first (`basicsr train` saves its "
     "weights there)"),
    ("pretrain_network_g", "experiments/pretrained_models/EDSR/EDSR_Mx2_f64b16_DIV2K_official-3ba7b086.pth",
     f"download BasicSR's released weights (links in {options.MODEL_ZOO}) to that path"),
    ("pretrain_network_d", "weights/disc.pth", "put the .pth file there"),
])
def test_missing_weights_say_which_network_they_load_where_to_get_them_and_how_to_drop_the_key(
        tmp_path: Path, key: str, value: str, source: str) -> None:
    opts = option_file(tmp_path, {"path": {key: value}})
    with pytest.raises(OptionError) as error:
        options.resolve_pretrained_paths(opts)
    message = str(error.value)
    network = key.removeprefix("pretrain_")
    assert message.startswith(f"{opts.file}: option 'path.{key}': path '{value}' does not exist (tried ")
    assert message.endswith(f"`path.{key}` loads weights into {network} before the run: {source}, fix the path, "
                            f"or start {network} from random weights with `--set path.{key}=~`.")
    assert "basicsr data prepare" not in message and "--demo" not in message
    options.apply_override(opts, f"path.{key}=~")  # the fix the message names is a working override
    options.resolve_pretrained_paths(opts)
    assert opts.opt["path"][key] is None


def test_a_missing_resume_state_points_at_auto_resume_or_a_fresh_start(tmp_path: Path) -> None:
    opts = option_file(tmp_path, {"path": {"resume_state": "experiments/x/training_states/5.state"}})
    with pytest.raises(OptionError) as error:
        options.resolve_pretrained_paths(opts)
    message = str(error.value)
    assert "option 'path.resume_state': path 'experiments/x/training_states/5.state' does not exist" in message
    assert "use --auto_resume" in message and "`--set path.resume_state=~`" in message
    assert "basicsr data prepare" not in message


@pytest.fixture
def fake_demo_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """demo_dataset() answering with folders under tmp_path (the real cache is tested in test_core_demo_data)."""
    scales: list[int] = []

    def demo_dataset(scale: int = 4, root: Any = None) -> DemoPaths:
        scales.append(scale)
        base = tmp_path / "demo"
        return DemoPaths(train_hr=base / "train" / "HR", train_lr=base / "train" / "LR_bicubic" / f"X{scale}",
                         val_hr=base / "val" / "HR", val_lr=base / "val" / "LR_bicubic" / f"X{scale}", scale=scale)

    monkeypatch.setattr(demo, "demo_dataset", demo_dataset)
    return scales


def test_demo_uris_resolve_to_the_demo_cache_folders(tmp_path: Path, fake_demo_data: list[int]) -> None:
    opts = option_file(tmp_path, {"datasets": {
        "train": {"dataroot_gt": "demo://train/HR", "dataroot_lq": "demo://train/LR_bicubic/X2"},
        "val": {"dataroot_gt": "demo://val/HR", "dataroot_lq": "demo://val/LR_bicubic/X3/"},
    }})

    options.resolve_dataset_paths(opts)

    base = tmp_path / "demo"
    assert opts.opt["datasets"] == {
        "train": {"dataroot_gt": str(base / "train" / "HR"), "dataroot_lq": str(base / "train/LR_bicubic/X2")},
        "val": {"dataroot_gt": str(base / "val" / "HR"), "dataroot_lq": str(base / "val/LR_bicubic/X3")},
    }
    assert fake_demo_data == [4, 2, 4, 3]


def test_an_unknown_demo_uri_lists_the_accepted_forms(tmp_path: Path, fake_demo_data: list[int]) -> None:
    opts = option_file(tmp_path, {"datasets": {"test": {"dataroot_gt": "demo://test/HR"}}})
    with pytest.raises(OptionError) as error:
        options.resolve_dataset_paths(opts)
    assert "option 'datasets.test.dataroot_gt': 'demo://test/HR' is not a demo data folder" in str(error.value)
    assert "demo://val/LR_bicubic/X{2,3,4}" in str(error.value)
    assert fake_demo_data == []


def test_use_demo_data_points_every_dataset_at_the_demo_data(tmp_path: Path, fake_demo_data: list[int]) -> None:
    opts = option_file(tmp_path, {"scale": 2, "val": {"val_freq": 10}, "datasets": {
        "train": {"name": "DIV2K", "type": "PairedImageDataset", "dataroot_gt": "/data/hr", "meta_info_file": "m.txt",
                  "gt_size": 192, "num_worker_per_gpu": 8},
    }})

    options.use_demo_data(opts)

    base = tmp_path / "demo"
    train, val = opts.opt["datasets"]["train"], opts.opt["datasets"]["val"]
    assert fake_demo_data == [2]
    assert (train["name"], train["dataroot_gt"], train["dataroot_lq"]) == (
        "demo_train", str(base / "train" / "HR"), str(base / "train" / "LR_bicubic" / "X2"))
    assert "meta_info_file" not in train
    assert (train["gt_size"], train["num_worker_per_gpu"], train["io_backend"]) == (96, 2, {"type": "disk"})
    assert (val["type"], val["dataroot_gt"], val["dataroot_lq"]) == (
        "PairedImageDataset", str(base / "val" / "HR"), str(base / "val" / "LR_bicubic" / "X2"))


def test_demo_scores_a_test_file_on_its_own_test_datasets_only(tmp_path: Path, fake_demo_data: list[int]) -> None:
    opts = option_file(tmp_path, {"scale": 4, "val": {"save_img": True}, "datasets": {
        "test_1": {"name": "Set5", "type": "PairedImageDataset"},
        "test_2": {"name": "Set14", "type": "PairedImageDataset"}}})

    options.use_demo_data(opts)

    assert list(opts.opt["datasets"]) == ["test_1", "test_2"]  # no extra demo 'val' dataset beside them
    assert opts.opt["datasets"]["test_2"]["dataroot_gt"] == str(tmp_path / "demo" / "val" / "HR")


def write_demo_manifest(tmp_path: Path, smallest_side: int) -> None:
    sizes = {"a.png": [480, 480], "b.png": [smallest_side, 384]}
    write(tmp_path / "demo" / "manifest.json", json.dumps({"hr_sizes": {"train": sizes, "val": {}}}))


def gan_option(tmp_path: Path, network_d: dict[str, Any], overrides: list[str] | None = None) -> OptionFile:
    opt = {"scale": 4, "network_d": network_d,
           "datasets": {"train": {"type": "PairedImageDataset", "gt_size": 128, "num_worker_per_gpu": 6}}}
    return options.load(write(tmp_path / "options" / "gan.yml", yaml.safe_dump(opt)), overrides)


@pytest.mark.parametrize("input_size", [None, 256])
def test_demo_keeps_the_crop_a_vgg_style_discriminator_is_built_for(tmp_path: Path, fake_demo_data: list[int],
                                                                    input_size: int | None) -> None:
    import torch

    from srode_plugins import compat

    compat.apply()  # BasicSR imports only after it

    discriminator_class = importlib.import_module("basicsr.archs.discriminator_arch").VGGStyleDiscriminator
    write_demo_manifest(tmp_path, 300)
    network_d = {"type": "VGGStyleDiscriminator", "num_in_ch": 3, "num_feat": 2}
    if input_size is not None:
        network_d["input_size"] = input_size
    opts = gan_option(tmp_path, network_d)

    options.use_demo_data(opts)

    gt_size = opts.opt["datasets"]["train"]["gt_size"]
    assert gt_size == (input_size or 128)
    kwargs = {k: v for k, v in network_d.items() if k != "type"}
    assert discriminator_class(**kwargs)(torch.zeros(1, 3, gt_size, gt_size)).shape == (1, 1)


def test_demo_refuses_a_network_input_size_larger_than_the_demo_photos(tmp_path: Path,
                                                                       fake_demo_data: list[int]) -> None:
    write_demo_manifest(tmp_path, 300)
    opts = gan_option(tmp_path, {"type": "AnyDiscriminator", "input_size": 384})
    with pytest.raises(OptionError) as error:
        options.use_demo_data(opts)
    assert str(error.value) == (f"{opts.file}: option 'network_d.input_size': value 384: the demo photos allow HR "
                                f"crops of at most 300 pixels; give this network a smaller input size for --demo")


def test_set_overrides_win_over_the_demo_defaults(tmp_path: Path, fake_demo_data: list[int]) -> None:
    opts = gan_option(tmp_path, {"type": "VGGStyleDiscriminator", "num_in_ch": 3, "num_feat": 2},
                      overrides=["datasets.train.gt_size=256", "datasets.train.num_worker_per_gpu=4",
                                 "datasets.train.io_backend.type=lmdb"])

    options.use_demo_data(opts)

    train = opts.opt["datasets"]["train"]
    assert (train["gt_size"], train["num_worker_per_gpu"], train["io_backend"]) == (256, 4, {"type": "lmdb"})
    assert train["dataroot_gt"] == str(tmp_path / "demo" / "train" / "HR")  # what --set left alone is demo data


def test_demo_gives_a_real_esrgan_dataset_a_meta_info_listing_the_demo_photos(tmp_path: Path,
                                                                            fake_demo_data: list[int]) -> None:
    (tmp_path / "demo" / "train" / "HR").mkdir(parents=True)
    opts = option_file(tmp_path, {"datasets": {
        "train": {"type": "RealESRGANDataset", "meta_info": "datasets/DF2K/meta_info/meta_info_DF2K.txt"},
        "val": {"type": "RealESRGANPairedDataset", "meta_info": "datasets/val/meta_info.txt"}}})

    options.use_demo_data(opts)

    listing = Path(opts.opt["datasets"]["train"]["meta_info"]).read_text().splitlines()
    assert listing == [f"{Path(photo).stem}.png" for photo in demo.TRAIN_PHOTOS]
    assert "meta_info" not in opts.opt["datasets"]["val"]  # the paired dataset then pairs the demo folders


def test_the_older_use_flip_spelling_reaches_datasets_as_use_hflip(tmp_path: Path) -> None:
    opts = option_file(tmp_path, {"datasets": {"train": {"use_flip": True, "use_rot": True},
                                               "train_b": {"use_flip": True, "use_hflip": False}}})
    options.rename_legacy_dataset_keys(opts)
    assert opts.opt["datasets"]["train"]["use_hflip"] is True
    assert opts.opt["datasets"]["train_b"]["use_hflip"] is False  # a file giving both keeps its own use_hflip


# ---------------------------------------------------------------- component references


SRGAN_LIKE = {
    "model_type": "SRGANModel",
    "network_g": {"type": "RRDBNet", "num_block": 1},
    "network_d": {"type": "VGGStyleDiscriminator"},
    "datasets": {"train": {"type": "PairedImageDataset", "io_backend": {"type": "disk"}},
                 "val_1": {"type": "PairedImageDataset"}},
    "train": {"optim_g": {"type": "Adam"}, "scheduler": {"type": "MultiStepLR"}, "pixel_opt": {"type": "L1Loss"},
              "gan_opt": {"type": "GANLoss"}, "ema_decay": 0.999},
    "val": {"metrics": {"psnr": {"type": "calculate_psnr"}, "lpips": {"type": "calculate_lpips"}}},
}


def test_component_references_name_kind_type_and_key_path() -> None:
    assert list(options.component_references(SRGAN_LIKE)) == [
        ("models", "SRGANModel", "model_type"),
        ("archs", "RRDBNet", "network_g.type"),
        ("archs", "VGGStyleDiscriminator", "network_d.type"),
        ("datasets", "PairedImageDataset", "datasets.train.type"),
        ("datasets", "PairedImageDataset", "datasets.val_1.type"),
        ("lr_schedulers", "MultiStepLR", "train.scheduler.type"),
        ("losses", "L1Loss", "train.pixel_opt.type"),
        ("losses", "GANLoss", "train.gan_opt.type"),
        ("metrics", "calculate_psnr", "val.metrics.psnr.type"),
        ("metrics", "calculate_lpips", "val.metrics.lpips.type"),
    ]


def test_plugin_kind_references_are_found_by_the_nearest_keys_only() -> None:
    opt = {
        **SRGAN_LIKE,
        "sampler": {"type": "HeunSampler", "solver_opt": {"type": "rk4"}},
        "diffusion": {"schedule": {"type": "ContinuousPowerSchedule"}},
        "samplers": {"fast": {"type": "EulerSampler"}},
        "network_g": {"type": "UNetModelSwin", "autoencoder": {"type": "VQAutoencoderF4"}},
    }
    kinds = ["archs", "autoencoders", "datasets", "losses", "metrics", "models", "samplers", "schedules"]

    found = list(options.extra_kind_references(opt, kinds))

    assert found == [  # not `sampler.solver_opt.type`: an option of the sampler, not a sampler
        ("autoencoders", "VQAutoencoderF4", "network_g.autoencoder.type"),
        ("samplers", "HeunSampler", "sampler.type"),
        ("schedules", "ContinuousPowerSchedule", "diffusion.schedule.type"),
        ("samplers", "EulerSampler", "samplers.fast.type"),
    ]


def test_a_list_of_plugin_components_is_found_by_index() -> None:
    opt = {"samplers": [{"type": "EulerSampler"}, {"type": "HeunSampler"}]}
    assert list(options.extra_kind_references(opt, ["samplers"])) == [
        ("samplers", "EulerSampler", "samplers.0.type"), ("samplers", "HeunSampler", "samplers.1.type")]


def test_get_path_walks_nested_keys() -> None:
    assert options.get_path(SRGAN_LIKE, "train.pixel_opt.type") == "L1Loss"
    assert options.get_path(SRGAN_LIKE, "train.pixel_opt.type.x", "none") == "none"
    assert options.get_path(SRGAN_LIKE, "train.missing") is None
