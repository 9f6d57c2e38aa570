"""Conformance: every upstream BasicSR 1.4.2 SISR train option file trains 2 iterations under `--demo` on the CPU,
and every SISR test file evaluates the weights it produced (tests/upstream_options/, keys and values unchanged).

Only `--set` overrides shrink the runs (network widths and depths, crops, batch 1, two iterations, one
validation image), as a user trying an upstream file on a laptop would. One case per train file; the README's
"Upstream BasicSR option files" table reports these cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from srode_plugins.engine.test import test as run_test
from srode_plugins.engine.train import train
from srode_plugins.errors import OptionError

UPSTREAM_OPTIONS = Path(__file__).parent / "upstream_options"
QUICK_RUN = ("num_gpu=0", "train.total_iter=2", "train.warmup_iter=-1", "datasets.train.batch_size_per_gpu=1",
             "datasets.train.num_worker_per_gpu=0", "logger.print_freq=1",
             "logger.use_tb_logger=false", "logger.save_checkpoint_freq=2")
VALIDATION_IMAGE = "chelsea.png"  # the smallest demo validation photo (451 x 300)
# test_RCAN.yml writes `suffix`, `crop_border` and `save_img` at the top level, where BasicSR never reads them,
# and has no `val:` section (stock `basicsr/test.py` stops there with KeyError: 'val'). srode names the first
# key and where it belongs; the user's fix: move them under val: (crop_border belongs to metrics it has none of).
UNREAD_TOP_LEVEL_KEYS = {"test_RCAN.yml": {"suffix": "suffix", "save_img": "save_img", "crop_border": None}}

TINY_EDSR = ("network_g.num_feat=8", "network_g.num_block=1")
TINY_RRDB = ("network_g.num_feat=4", "network_g.num_block=1", "network_g.num_grow_ch=4")
TINY_MSRRESNET = ("network_g.num_feat=8", "network_g.num_block=1")


@dataclass(frozen=True)
class Case:
    """One upstream train file, the `--set` shrink applied to it, and the upstream test files of that network."""

    train: str
    shrink: tuple[str, ...]
    tests: tuple[str, ...] = ()  # evaluate the weights the training saved
    tests_at_another_scale: tuple[str, ...] = ()  # evaluate fresh (random) weights of the test file's network
    # the upstream file whose network gives the weights `path.pretrain_network_g` loads (fine-tuning from another
    # scale or from the PSNR-oriented model); fresh weights of that network, shrunk alike, stand in for them
    start_from: str | None = None
    label: str | None = None

    @property
    def id(self) -> str:
        return self.label or self.train.removesuffix(".yml").removeprefix("train_")


CASES = [
    Case("train_EDSR_Mx2.yml", TINY_EDSR + ("datasets.train.gt_size=32",), ("test_EDSR_Mx2.yml",)),
    Case("train_EDSR_Mx3.yml", TINY_EDSR + ("datasets.train.gt_size=24",), ("test_EDSR_Mx3.yml",),
         start_from="train_EDSR_Mx2.yml"),
    Case("train_EDSR_Mx4.yml", TINY_EDSR + ("datasets.train.gt_size=32",), ("test_EDSR_Mx4.yml",),
         start_from="train_EDSR_Mx2.yml"),
    Case("train_EDSR_Lx2.yml", TINY_EDSR + ("datasets.train.gt_size=32",), ("test_EDSR_Lx2.yml",)),
    Case("train_EDSR_Lx3.yml", TINY_EDSR + ("datasets.train.gt_size=24",), ("test_EDSR_Lx3.yml",),
         start_from="train_EDSR_Lx2.yml"),
    Case("train_EDSR_Lx4.yml", TINY_EDSR + ("datasets.train.gt_size=32",), ("test_EDSR_Lx4.yml",),
         start_from="train_EDSR_Lx2.yml"),
    Case("train_RCAN_x2.yml", ("network_g.num_feat=16", "network_g.num_group=1", "network_g.num_block=1",
                               "datasets.train.gt_size=32"), tests_at_another_scale=("test_RCAN.yml",)),
    Case("train_RRDBNet_PSNR_x4.yml", TINY_RRDB + ("datasets.train.gt_size=32",), ("test_RRDBNet_PSNR_x4.yml",)),
    Case("train_ESRGAN_x4.yml", TINY_RRDB + ("network_d.num_feat=2",), ("test_ESRGAN_x4.yml",
                                                                         "test_ESRGAN_x4_woGT.yml"),
         start_from="train_RRDBNet_PSNR_x4.yml"),
    Case("train_MSRResNet_x2.yml", TINY_MSRRESNET + ("datasets.train.gt_size=32",), ("test_MSRResNet_x2.yml",),
         start_from="train_MSRResNet_x4.yml"),
    Case("train_MSRResNet_x3.yml", TINY_MSRRESNET + ("datasets.train.gt_size=24",), ("test_MSRResNet_x3.yml",),
         start_from="train_MSRResNet_x4.yml"),
    Case("train_MSRResNet_x4.yml", TINY_MSRRESNET + ("datasets.train.gt_size=32",), ("test_MSRResNet_x4.yml",
                                                                                      "test_MSRResNet_x4_woGT.yml")),
    Case("train_MSRGAN_x4.yml", TINY_MSRRESNET + ("network_d.num_feat=2",), ("test_MSRGAN_x4.yml",),
         start_from="train_MSRResNet_x4.yml"),
    Case("train_SwinIR_SRx2_scratch.yml", ("network_g.embed_dim=6", "network_g.depths=[1]", "network_g.num_heads=[1]",
                                           "datasets.train.gt_size=32")),
    Case("train_SwinIR_SRx4_scratch.yml", ("network_g.embed_dim=6", "network_g.depths=[1]", "network_g.num_heads=[1]",
                                           "datasets.train.gt_size=32")),
    # upstream ships no lightweight SwinIR file: the classical one with SwinIR-light's upsampler
    Case("train_SwinIR_SRx4_scratch.yml", ("network_g.embed_dim=6", "network_g.depths=[1]", "network_g.num_heads=[1]",
                                           "network_g.upsampler=pixelshuffledirect", "datasets.train.gt_size=32"),
         label="SwinIR_SRx4_lightweight_upsampler"),
    Case("train_ECBSR_x2_m4c16_prelu.yml", ("network_g.num_block=1", "network_g.num_channel=4",
                                            "datasets.train.gt_size=32")),
    Case("train_ECBSR_x4_m4c16_prelu.yml", ("network_g.num_block=1", "network_g.num_channel=4",
                                            "datasets.train.gt_size=32")),
    Case("train_ECBSR_x4_m4c16_prelu_RGB.yml", ("network_g.num_block=1", "network_g.num_channel=4",
                                                "datasets.train.gt_size=32")),
    # Real-ESRNet x2 fine-tunes the released x4 Real-ESRGAN (strict_load_g: False: the x2 input layer differs)
    Case("train_realesrnet_x2plus.yml", TINY_RRDB + ("gt_size=64", "datasets.train.gt_size=64"),
         start_from="train_realesrgan_x4plus.yml"),
    Case("train_realesrnet_x4plus.yml", TINY_RRDB + ("gt_size=64", "datasets.train.gt_size=64"),
         start_from="train_RRDBNet_PSNR_x4.yml"),  # ESRGAN's released generator: the same RRDBNet x4
    Case("train_realesrgan_x2plus.yml", TINY_RRDB + ("gt_size=64", "datasets.train.gt_size=64",
                                                     "network_d.num_feat=2"), start_from="train_realesrnet_x2plus.yml"),
    Case("train_realesrgan_x4plus.yml", TINY_RRDB + ("gt_size=64", "datasets.train.gt_size=64",
                                                     "network_d.num_feat=2"), start_from="train_realesrnet_x4plus.yml"),
    Case("train_LDL_Real_x4.yml", TINY_RRDB + ("gt_size=64", "datasets.train.gt_size=64", "network_d.num_feat=2"),
         start_from="train_realesrnet_x4plus.yml"),
]


def one_image_per_dataset(opt: dict, meta_info: Path) -> list[str]:
    """`--set` entries that list one demo photo for every validation / test dataset of an option file."""
    return [f"datasets.{phase}.meta_info_file={meta_info}" for phase in opt["datasets"] if phase != "train"]


def quick_training(opt: dict, case: Case, meta_info: Path, root: Path) -> list[str]:
    validate_at_the_end = ["val.val_freq=2"] if opt.get("val") else []  # files without `val:` do not validate
    start = "~"
    if case.start_from is not None:
        source = yaml.safe_load((UPSTREAM_OPTIONS / case.start_from).read_text())
        start = str(fresh_weights(source, network_shrink(case), root / "start_weights.pth"))
    return [*QUICK_RUN, f"path.pretrain_network_g={start}", *validate_at_the_end, *case.shrink,
            *one_image_per_dataset(opt, meta_info)]


def network_shrink(case: Case) -> tuple[str, ...]:
    return tuple(entry for entry in case.shrink if entry.startswith("network_g."))


def quick_test(opt: dict, network_shrink: tuple[str, ...], meta_info: Path, weights: Path) -> list[str]:
    return ["num_gpu=0", *network_shrink, *one_image_per_dataset(opt, meta_info), f"path.pretrain_network_g={weights}"]


def fresh_weights(opt: dict, network_shrink: tuple[str, ...], target: Path) -> Path:
    """Save the randomly initialised, shrunken `network_g` of a test option file as BasicSR weights."""
    from basicsr.archs import build_network

    network = dict(opt["network_g"])
    for entry in network_shrink:
        key, value = entry.removeprefix("network_g.").split("=", 1)
        network[key] = yaml.safe_load(value)
    state = build_network(network).state_dict()
    torch.save({"params": state, "params_ema": state}, target)  # the Real-ESRGAN files load params_ema
    return target


def with_unread_keys_moved(test_file: str, overrides: list[str], root: Path) -> Path:
    """The file as srode runs it: the strict schema refuses a top-level key BasicSR never reads, naming it and the
    section it belongs to; the copy moves such keys under `val:`, as the error tells the user to."""
    option = UPSTREAM_OPTIONS / test_file
    moves = UNREAD_TOP_LEVEL_KEYS.get(test_file)
    if moves is None:
        return option
    first = next(iter(moves))
    with pytest.raises(OptionError, match=rf"option '{first}': unknown key '{first}' .* is a key of val"):
        run_test(str(option), overrides=overrides, demo=True, root=root)
    opt = yaml.safe_load(option.read_text())
    for key, val_key in moves.items():
        value = opt.pop(key)
        if val_key is not None:
            opt.setdefault("val", {})[val_key] = value
    copy = root / test_file
    copy.write_text(yaml.safe_dump(opt, sort_keys=False))
    return copy


def evaluate(test_file: str, network_shrink: tuple[str, ...], meta_info: Path, weights: Path, root: Path) -> None:
    """Run an upstream test file under --demo and check it scored every dataset with every metric it names."""
    opt = yaml.safe_load((UPSTREAM_OPTIONS / test_file).read_text())
    overrides = quick_test(opt, network_shrink, meta_info, weights)
    option = with_unread_keys_moved(test_file, overrides, root)
    scores = run_test(str(option), overrides=overrides, demo=True, root=root)
    assert set(scores) == {d["name"] for d in opt["datasets"].values()}, test_file
    metrics = set((opt.get("val") or {}).get("metrics") or {})
    assert all(set(row) == metrics and all(map(math.isfinite, row.values())) for row in scores.values()), scores


@pytest.mark.slow  # 23 upstream train files and 15 test files on tiny networks in one process: ~3 min on 2 cores
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_upstream_option_file_trains_two_iterations_and_its_test_files_evaluate_the_weights_on_the_cpu(
        case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRODE_RANDOM_INIT_PRETRAINED", "1")  # perceptual losses' VGG19: random, no download
    meta_info = tmp_path / "one_photo.txt"
    meta_info.write_text(f"{VALIDATION_IMAGE}\n")
    option = UPSTREAM_OPTIONS / case.train
    opt = yaml.safe_load(option.read_text())

    result = train(str(option), overrides=quick_training(opt, case, meta_info, tmp_path), demo=True, root=tmp_path)

    assert result.iter == 2 and result.skipped_steps == 0
    validation = opt.get("val") or {}
    if validation.get("metrics"):
        assert set(result.metrics) == set(validation["metrics"])
        assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())
    elif validation.get("save_img"):  # LDL validates on LR photos without ground truth: the SR images are the result
        assert list((Path(result.experiments_root) / "visualization").rglob("*_2.png"))
    weights = Path(result.experiments_root) / "models" / "net_g_latest.pth"
    assert weights.is_file()
    for test_file in case.tests:
        evaluate(test_file, network_shrink(case), meta_info, weights, tmp_path)
    for test_file in case.tests_at_another_scale:
        test_opt = yaml.safe_load((UPSTREAM_OPTIONS / test_file).read_text())
        random_weights = fresh_weights(test_opt, network_shrink(case), tmp_path / f"fresh_{test_file}.pth")
        evaluate(test_file, network_shrink(case), meta_info, random_weights, tmp_path)
