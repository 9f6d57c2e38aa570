"""Dataset checks before training: each problem is one DatasetError naming the option key, the file and the fix."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from srode_plugins.data.checks import check_datasets
from srode_plugins.errors import DatasetError


def write_image(path: Path, height: int, width: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    return path


def paired_folders(root: Path, names: list[str], lr_size: int = 16, scale: int = 2, tmpl: str = "{}") -> dict:
    for name in names:
        stem, ext = name.rsplit(".", 1)
        write_image(root / "HR" / name, lr_size * scale, lr_size * scale)
        write_image(root / "LR" / f"{tmpl.format(stem)}.{ext}", lr_size, lr_size)
    return {"type": "PairedImageDataset", "dataroot_gt": str(root / "HR"), "dataroot_lq": str(root / "LR"),
            "filename_tmpl": tmpl, "io_backend": {"type": "disk"}}


def run_opt(train: dict[str, Any], val: dict[str, Any] | None = None, scale: int = 2) -> dict[str, Any]:
    datasets = {"train": {"batch_size_per_gpu": 1, "gt_size": 16, **train}}
    if val is not None:
        datasets["val"] = val
    return {"opt_file": "opts/x.yml", "scale": scale, "world_size": 1, "datasets": datasets}


def error_of(opt: dict[str, Any]) -> str:
    with pytest.raises(DatasetError) as info:
        check_datasets(opt)
    message = str(info.value)
    assert "\n" not in message and message.startswith("opts/x.yml: option 'datasets.")
    return message


def test_consistent_pairs_pass_and_the_summary_counts_every_image(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    train = paired_folders(tmp_path / "train", ["a.png", "b.png"], tmpl="{}x2")
    val = paired_folders(tmp_path / "val", ["c.png"])
    logger = logging.getLogger("test_checks")
    with caplog.at_level(logging.INFO, logger="test_checks"):
        check_datasets(run_opt(train, val), logger)
    assert "6 image(s) readable" in caplog.text


def test_an_empty_training_folder_names_the_key_and_suggests_demo(tmp_path: Path) -> None:
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR").mkdir()
    train = {"type": "PairedImageDataset", "dataroot_gt": str(tmp_path / "HR"), "dataroot_lq": str(tmp_path / "LR")}
    message = error_of(run_opt(train))
    assert "datasets.train.dataroot_gt" in message and "holds no images" in message and "--demo" in message


@pytest.mark.parametrize("content", [b"", b"this is a text file, not an image", "truncated"])
def test_an_unreadable_image_names_the_file(tmp_path: Path, content: bytes | str) -> None:
    train = paired_folders(tmp_path, ["a.png", "b.png"])
    bad = tmp_path / "HR" / "b.png"
    bad.write_bytes(bad.read_bytes()[:60] if content == "truncated" else content)
    message = error_of(run_opt(train))
    assert f"'{bad}'" in message and "datasets.train.dataroot_gt" in message and "replace or remove" in message


def test_different_lr_and_hr_counts_name_both_folders_and_the_extra_file(tmp_path: Path) -> None:
    train = paired_folders(tmp_path, ["a.png", "b.png"])
    write_image(tmp_path / "LR" / "zzz.png", 16, 16)
    message = error_of(run_opt(train))
    assert "holds 3 file(s)" in message and "holds 2" in message and "LR files without HR: zzz.png" in message


def test_an_lr_name_missing_under_filename_tmpl_names_the_expected_file(tmp_path: Path) -> None:
    train = paired_folders(tmp_path, ["a.png"], tmpl="{}x2")
    train["filename_tmpl"] = "{}"
    message = error_of(run_opt(train))
    assert "no LR image 'a.png'" in message and "filename_tmpl '{}'" in message


def test_a_training_pair_at_the_wrong_scale_names_both_files_and_sizes(tmp_path: Path) -> None:
    train = paired_folders(tmp_path, ["a.png"], scale=3)
    message = error_of(run_opt(train, scale=2))
    assert "48x48" in message and "16x16" in message and "HR must be 32x32" in message


def test_validation_sizes_allow_only_the_mod_crop_remainder(tmp_path: Path) -> None:
    train = paired_folders(tmp_path / "train", ["a.png"])
    val = paired_folders(tmp_path / "val", ["v.png"])
    write_image(tmp_path / "val" / "HR" / "v.png", 33, 33)  # 33 // 2 = 16: what BasicSR's mod-crop trims
    check_datasets(run_opt(train, val), logging.getLogger("test_checks"))
    write_image(tmp_path / "val" / "HR" / "v.png", 40, 40)
    message = error_of(run_opt(train, val))
    assert "datasets.val.dataroot_lq" in message and "40x40" in message


def test_a_batch_larger_than_the_training_set_names_the_largest_batch_that_fits(tmp_path: Path) -> None:
    train = paired_folders(tmp_path, ["a.png", "b.png", "c.png"])
    message = error_of(run_opt({**train, "batch_size_per_gpu": 4}))
    assert "datasets.train.batch_size_per_gpu" in message and "batch_size_per_gpu <= 3" in message
    check_datasets(run_opt({**train, "batch_size_per_gpu": 4, "dataset_enlarge_ratio": 2}),
                   logging.getLogger("test_checks"))


@pytest.mark.parametrize("ratio", [0, -1, "2"])
def test_a_dataset_enlarge_ratio_that_gives_empty_epochs_is_refused(tmp_path: Path, ratio: object) -> None:
    train = paired_folders(tmp_path, ["a.png", "b.png"])
    message = error_of(run_opt({**train, "dataset_enlarge_ratio": ratio}))
    assert "datasets.train.dataset_enlarge_ratio" in message and f"value {ratio!r}" in message


def test_an_lr_image_smaller_than_the_training_crop_names_gt_size(tmp_path: Path) -> None:
    train = paired_folders(tmp_path, ["a.png"], lr_size=8)
    message = error_of(run_opt({**train, "gt_size": 32, "batch_size_per_gpu": 1}))
    assert "datasets.train.gt_size" in message and "use a gt_size <= 16" in message


def test_meta_info_file_pairs_are_checked_like_folders(tmp_path: Path) -> None:
    train = paired_folders(tmp_path, ["a.png", "b.png"])
    meta = tmp_path / "meta.txt"
    meta.write_text("a.png (32,32,3)\nmissing.png (32,32,3)\n")
    message = error_of(run_opt({**train, "meta_info_file": str(meta)}))
    assert f"'{tmp_path / 'HR' / 'missing.png'}'" in message and "cannot be read" in message


def test_lmdb_and_unknown_dataset_types_are_skipped_with_a_log_line(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    train = {"type": "PairedImageDataset", "dataroot_gt": "x.lmdb", "dataroot_lq": "y.lmdb",
             "io_backend": {"type": "lmdb"}}
    val = {"type": "MyPluginDataset", "dataroot_gt": "anything"}
    with caplog.at_level(logging.INFO, logger="test_checks"):
        check_datasets(run_opt(train, val), logging.getLogger("test_checks"))
    assert "skipped file checks for datasets.train (io_backend 'lmdb'" in caplog.text
    assert "skipped file checks for datasets.val (type 'MyPluginDataset'" in caplog.text
