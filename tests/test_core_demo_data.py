"""The embedded demo dataset: built once from scikit-image's bundled photos, fixed split, exact bicubic LR."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from srode_plugins.data import demo
from srode_plugins.data.demo import (
    DEMO_SCALES,
    TRAIN_PHOTOS,
    VAL_PHOTOS,
    DemoCacheError,
    DemoPaths,
    default_demo_root,
    demo_dataset,
    demo_options,
    resolve_demo_uri,
)
from srode_plugins.data.prepare import DataError

# isort: split
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.matlab_functions import imresize


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "cache"
    demo_dataset(4, root)
    return root


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def png_names(photos: tuple[str, ...]) -> list[str]:
    return sorted(f"{Path(photo).stem}.png" for photo in photos)


def test_split_is_fixed_disjoint_and_uses_only_bundled_files() -> None:
    assert TRAIN_PHOTOS == (
        "astronaut.png", "brick.png", "camera.png", "coins.png", "grass.png", "gravel.png",
        "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "retina.jpg",
    )  # fmt: skip
    assert VAL_PHOTOS == ("chelsea.png", "coffee.png", "rocket.jpg")
    assert not set(TRAIN_PHOTOS) & set(VAL_PHOTOS)
    bundled = demo.skimage_data_dir()
    assert all((bundled / photo).is_file() for photo in TRAIN_PHOTOS + VAL_PHOTOS)


def test_every_lr_folder_has_exactly_the_hr_file_names(demo_root: Path) -> None:
    for split, photos in (("train", TRAIN_PHOTOS), ("val", VAL_PHOTOS)):
        assert sorted(os.listdir(demo_root / split / "HR")) == png_names(photos)
        for scale in DEMO_SCALES:
            assert sorted(os.listdir(demo_root / split / "LR_bicubic" / f"X{scale}")) == png_names(photos)


def test_hr_is_a_centre_crop_of_the_bundled_photo_with_sides_divisible_by_12(demo_root: Path) -> None:
    for split in ("train", "val"):
        for name in os.listdir(demo_root / split / "HR"):
            hr = read(demo_root / split / "HR" / name)
            assert hr.ndim == 3 and hr.shape[2] == 3 and hr.dtype == np.uint8
            assert hr.shape[0] % 12 == 0 and hr.shape[1] % 12 == 0 and max(hr.shape[:2]) <= 480
    # astronaut is 512 x 512 RGB: the 480 x 480 centre starts at (16, 16).
    astronaut = np.asarray(Image.open(demo.skimage_data_dir() / "astronaut.png").convert("RGB"))
    assert np.array_equal(read(demo_root / "train" / "HR" / "astronaut.png"), astronaut[16:496, 16:496, ::-1])
    # chelsea is 300 x 451: 300 x 444 (largest multiples of 12), centred horizontally at column 3.
    chelsea = np.asarray(Image.open(demo.skimage_data_dir() / "chelsea.png").convert("RGB"))
    assert np.array_equal(read(demo_root / "val" / "HR" / "chelsea.png"), chelsea[:, 3:447, ::-1])
    camera = read(demo_root / "train" / "HR" / "camera.png")  # a grayscale photo, stored with 3 equal channels
    assert np.array_equal(camera[..., 0], camera[..., 1]) and np.array_equal(camera[..., 0], camera[..., 2])


@pytest.mark.parametrize("scale", DEMO_SCALES)
def test_lr_is_exactly_basicsr_matlab_imresize_of_hr(demo_root: Path, scale: int) -> None:
    for split, name in (("train", "astronaut.png"), ("train", "coins.png"), ("val", "chelsea.png")):
        hr = read(demo_root / split / "HR" / name)
        lr = read(demo_root / split / "LR_bicubic" / f"X{scale}" / name)
        expected = (np.clip(imresize(hr / 255.0, 1 / scale), 0, 1) * 255.0).round().astype(np.uint8)
        assert lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, 3)
        assert np.array_equal(lr, expected)


@pytest.mark.parametrize("scale", DEMO_SCALES)
def test_lr_agrees_with_pillow_antialiased_bicubic_away_from_the_border(demo_root: Path, scale: int) -> None:
    # Pillow's BICUBIC (a = -0.5, support widened by the scale) is the same filter as MATLAB's antialiased
    # imresize; only the border handling and 8-bit intermediates differ. Area averaging is 1-3 levels off.
    hr = read(demo_root / "train" / "HR" / "astronaut.png")
    lr = read(demo_root / "train" / "LR_bicubic" / f"X{scale}" / "astronaut.png").astype(int)
    pillow = np.asarray(Image.fromarray(hr).resize((hr.shape[1] // scale, hr.shape[0] // scale), Image.BICUBIC))
    difference = np.abs(pillow.astype(int) - lr)[4:-4, 4:-4]
    assert difference.mean() < 0.3
    assert np.mean(difference > 2) < 0.01


def test_second_use_reuses_the_cache_without_rebuilding(demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {path: path.stat().st_mtime_ns for path in demo_root.rglob("*")}

    def fail(staging: Path) -> None:
        raise AssertionError("the demo cache was rebuilt")

    monkeypatch.setattr(demo, "_build_cache", fail)
    paths = demo_dataset(2, demo_root)
    assert paths == DemoPaths(
        train_hr=demo_root / "train" / "HR",
        train_lr=demo_root / "train" / "LR_bicubic" / "X2",
        val_hr=demo_root / "val" / "HR",
        val_lr=demo_root / "val" / "LR_bicubic" / "X2",
        scale=2,
    )
    assert {path: path.stat().st_mtime_ns for path in demo_root.rglob("*")} == before


def test_interrupted_build_leaves_neither_cache_nor_staging_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def interrupt_on_fifth(img: np.ndarray, scale: int) -> np.ndarray:
        calls.append(scale)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return img[::scale, ::scale]

    monkeypatch.setattr(demo, "bicubic_downscale", interrupt_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        demo_dataset(4, tmp_path / "cache")
    assert list(tmp_path.iterdir()) == []


def test_a_build_that_loses_the_race_uses_the_winners_cache(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cache"

    def other_process_finishes_first(staging: Path) -> None:
        (staging / "partial.png").write_bytes(b"")
        shutil.copytree(demo_root, root)

    monkeypatch.setattr(demo, "_build_cache", other_process_finishes_first)
    paths = demo_dataset(3, root)
    assert paths.val_lr == root / "val" / "LR_bicubic" / "X3"
    assert [path.name for path in tmp_path.iterdir()] == ["cache"]
    assert not (root / "partial.png").exists()


def test_a_folder_that_is_not_a_demo_cache_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DemoCacheError, match="delete that folder"):
        demo_dataset(4, tmp_path)


def test_demo_uris_resolve_to_cache_folders(demo_root: Path) -> None:
    assert resolve_demo_uri("demo://train/HR", demo_root) == demo_root / "train" / "HR"
    assert resolve_demo_uri("demo://train/LR_bicubic/X4", demo_root) == demo_root / "train" / "LR_bicubic" / "X4"
    assert resolve_demo_uri("demo://val/HR/", demo_root) == demo_root / "val" / "HR"
    assert resolve_demo_uri("demo://val/LR_bicubic/X2", demo_root) == demo_root / "val" / "LR_bicubic" / "X2"


@pytest.mark.parametrize("uri", ["demo://test/HR", "demo://val/LR_bicubic/X5", "demo://val/LR", "/data/HR"])
def test_unknown_demo_uri_names_the_accepted_forms(uri: str) -> None:
    with pytest.raises(ValueError, match=r"demo://train/HR, demo://train/LR_bicubic/X\{2,3,4\}"):
        resolve_demo_uri(uri)


def test_scale_without_demo_lr_images_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="scale 5"):
        demo_dataset(5, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_default_root_lives_under_srode_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SRODE_CACHE", str(tmp_path))
    assert default_demo_root() == tmp_path / "demo" / f"v{demo.DEMO_DATA_VERSION}"
    monkeypatch.delenv("SRODE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_demo_root() == tmp_path / "xdg" / "srode" / "demo" / f"v{demo.DEMO_DATA_VERSION}"


def test_demo_options_feed_basicsr_paired_image_dataset(demo_root: Path) -> None:
    options = demo_options(4, gt_size=48, batch_size=2, root=demo_root)
    train, val = PairedImageDataset(options["train"]), PairedImageDataset(options["val"])
    assert len(train) == len(TRAIN_PHOTOS) and len(val) == len(VAL_PHOTOS)
    sample = train[0]
    assert tuple(sample["gt"].shape) == (3, 48, 48) and tuple(sample["lq"].shape) == (3, 12, 12)
    for index in range(len(val)):
        item = val[index]
        assert Path(item["gt_path"]).name == Path(item["lq_path"]).name
        assert item["gt"].shape[1:] == tuple(4 * size for size in item["lq"].shape[1:])
    assert options["train"]["num_worker_per_gpu"] == 0 and options["train"]["batch_size_per_gpu"] == 2


def test_demo_options_refuse_a_patch_larger_than_the_smallest_photo(demo_root: Path) -> None:
    with pytest.raises(DataError, match="at most 300"):
        demo_options(4, gt_size=480, root=demo_root)
    with pytest.raises(DataError, match="multiple of scale 3"):
        demo_options(3, gt_size=64, root=demo_root)
