"""`basicsr data prepare`: modcrop, MATLAB-bicubic LR, sub-image tiling and LMDB, on two small synthetic images."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from srode_plugins.data import prepare
from srode_plugins.data.prepare import (
    DataError,
    add_prepare_arguments,
    prepare_dataset,
    run_prepare,
    subimage_origins,
)

# isort: split
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils import FileClient, imfrombytes
from basicsr.utils.matlab_functions import imresize

SOURCE_SIZES = {"wide": (64, 96), "odd": (50, 70)}  # (H, W); "odd" is modcropped to 48 x 68 at x4


@pytest.fixture
def hr_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "hr"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (height, width) in SOURCE_SIZES.items():
        noise = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{name}.png"), cv2.GaussianBlur(noise, (5, 5), 1.0))
    return folder


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def matlab_bicubic(hr: np.ndarray, scale: int) -> np.ndarray:
    return (np.clip(imresize(hr / 255.0, 1 / scale), 0, 1) * 255.0).round().astype(np.uint8)


def test_prepare_writes_modcropped_hr_and_matlab_bicubic_lr_with_the_same_names(hr_dir: Path, tmp_path: Path) -> None:
    prepared = prepare_dataset(hr_dir, tmp_path / "out", scale=4, workers=1)
    assert prepared.hr == tmp_path / "out" / "HR" and prepared.lr == tmp_path / "out" / "LR_bicubic" / "X4"
    assert prepared.count == 2 and prepared.hr_lmdb is None and prepared.skipped == ()
    assert sorted(p.name for p in prepared.hr.iterdir()) == sorted(p.name for p in prepared.lr.iterdir())
    wide, odd = read(prepared.hr / "wide.png"), read(prepared.hr / "odd.png")
    assert np.array_equal(wide, read(hr_dir / "wide.png"))
    assert np.array_equal(odd, read(hr_dir / "odd.png")[:48, :68])
    assert read(prepared.lr / "wide.png").shape == (16, 24, 3) and read(prepared.lr / "odd.png").shape == (12, 17, 3)
    assert np.array_equal(read(prepared.lr / "odd.png"), matlab_bicubic(odd, 4))


def test_subimage_origins_follow_basicsr_extract_subimages() -> None:
    assert subimage_origins(100, 48, 24) == [0, 24, 48, 52]  # 4 px left over -> one window flush with the edge
    assert subimage_origins(100, 48, 24, thresh=10) == [0, 24, 48]  # ... unless thresh tolerates them
    assert subimage_origins(96, 48, 24) == [0, 24, 48]
    assert subimage_origins(40, 48, 24) == []


def test_subimages_tile_hr_and_lr_exactly(hr_dir: Path, tmp_path: Path) -> None:
    prepared = prepare_dataset(hr_dir, tmp_path / "out", scale=4, crop=32, step=16, workers=1)
    # wide 64 x 96: rows 0,16,32 x cols 0,16,32,48,64; odd 48 x 68: rows 0,16 x cols 0,16,32,36 (edge window).
    layouts = {"wide": ([0, 16, 32], [0, 16, 32, 48, 64]), "odd": ([0, 16], [0, 16, 32, 36])}
    assert prepared.count == 15 + 8
    for stem, (tops, lefts) in layouts.items():
        source = read(hr_dir / f"{stem}.png")
        hr_full = source[: source.shape[0] // 4 * 4, : source.shape[1] // 4 * 4]
        lr_full = matlab_bicubic(hr_full, 4)
        hr_canvas, lr_canvas = np.zeros_like(hr_full), np.zeros_like(lr_full)
        hr_covered = np.zeros(hr_full.shape[:2], bool)
        index = 0
        for top in tops:
            for left in lefts:
                index += 1
                hr_crop = read(prepared.hr / f"{stem}_s{index:03d}.png")
                lr_crop = read(prepared.lr / f"{stem}_s{index:03d}.png")
                assert hr_crop.shape == (32, 32, 3) and lr_crop.shape == (8, 8, 3)
                hr_canvas[top : top + 32, left : left + 32] = hr_crop
                lr_canvas[top // 4 : top // 4 + 8, left // 4 : left // 4 + 8] = lr_crop
                hr_covered[top : top + 32, left : left + 32] = True
        assert not (prepared.hr / f"{stem}_s{index + 1:03d}.png").exists()
        assert hr_covered.all()
        assert np.array_equal(hr_canvas, hr_full) and np.array_equal(lr_canvas, lr_full)


def test_images_smaller_than_the_crop_are_skipped_and_reported(hr_dir: Path, tmp_path: Path) -> None:
    # wide (64 x 96) gives windows at columns 0 and 32; odd (48 x 68 after modcrop) has no 64 x 64 window.
    prepared = prepare_dataset(hr_dir, tmp_path / "out", scale=4, crop=64, workers=1)
    assert prepared.skipped == ("odd.png",)
    assert sorted(p.name for p in prepared.hr.iterdir()) == ["wide_s001.png", "wide_s002.png"]


def test_lmdb_is_readable_by_basicsr_and_equals_the_pngs(hr_dir: Path, tmp_path: Path) -> None:
    prepared = prepare_dataset(hr_dir, tmp_path / "out", scale=2, lmdb=True, workers=1)
    assert prepared.hr_lmdb == tmp_path / "out" / "HR.lmdb"
    assert prepared.lr_lmdb == tmp_path / "out" / "LR_bicubic" / "X2.lmdb"
    meta = sorted((prepared.hr_lmdb / "meta_info.txt").read_text().splitlines())
    assert meta == ["odd.png (50,70,3) 1", "wide.png (64,96,3) 1"]
    client = FileClient("lmdb", db_paths=[str(prepared.lr_lmdb), str(prepared.hr_lmdb)], client_keys=["lq", "gt"])
    for stem in SOURCE_SIZES:
        assert np.array_equal(imfrombytes(client.get(stem, "gt"), float32=False), read(prepared.hr / f"{stem}.png"))
        assert np.array_equal(imfrombytes(client.get(stem, "lq"), float32=False), read(prepared.lr / f"{stem}.png"))
    for environment in client.client._client.values():  # lmdb allows one open handle per process
        environment.close()

    dataset = PairedImageDataset({**prepared.dataset_options(), "phase": "val", "scale": 2})
    shapes = sorted(tuple(dataset[i]["gt"].shape) for i in range(len(dataset)))
    assert shapes == [(3, 50, 70), (3, 64, 96)]


def test_lmdb_refuses_stems_basicsr_cannot_key(hr_dir: Path, tmp_path: Path) -> None:
    (hr_dir / "wide.png").rename(hr_dir / "wide.v2.png")
    with pytest.raises(DataError, match="wide.v2.png cannot be an LMDB key"):
        prepare_dataset(hr_dir, tmp_path / "out", scale=2, lmdb=True, workers=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 9}, "--scale 9: the scale must be an integer from 2 to 8"),
        ({"scale": 1}, "--scale 1"),
        ({"scale": 4, "crop": 30}, "--crop 30: the sub-image size must be a positive multiple of --scale 4"),
        ({"scale": 4, "crop": 32, "step": 10}, "--step 10"),
        ({"scale": 4, "step": 16}, "--step 16 needs --crop"),
        ({"scale": 4, "thresh": 8}, "--thresh 8 needs --crop"),
    ],
)
def test_bad_geometry_is_refused_before_any_work(hr_dir: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        prepare_dataset(hr_dir, tmp_path / "out", workers=1, **kwargs)
    assert not (tmp_path / "out").exists()


def test_missing_or_empty_hr_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        prepare_dataset(tmp_path / "nowhere", tmp_path / "out", scale=4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="no images found"):
        prepare_dataset(tmp_path / "empty", tmp_path / "out", scale=4)


def test_existing_output_is_never_overwritten(hr_dir: Path, tmp_path: Path) -> None:
    prepare_dataset(hr_dir, tmp_path / "out", scale=4, workers=1)
    with pytest.raises(DataError, match="already exists"):
        prepare_dataset(hr_dir, tmp_path / "out", scale=4, workers=1)
    prepared = prepare_dataset(hr_dir, tmp_path / "out2", scale=2, workers=1)
    assert prepared.count == 2


def test_interrupted_prepare_leaves_nothing_behind(
    hr_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "_prepare_one", interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(hr_dir, tmp_path / "out", scale=4, workers=1)
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_prints_the_dataset_options_and_reports_errors(
    hr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_prepare_arguments(parser)
    args = parser.parse_args(["--hr", str(hr_dir), "--out", str(tmp_path / "out"), "--scale", "2", "--workers", "1"])
    assert run_prepare(args) == 0
    assert f"dataroot_lq: {tmp_path / 'out' / 'LR_bicubic' / 'X2'}" in capsys.readouterr().out
    args = parser.parse_args(["--hr", str(hr_dir), "--out", str(tmp_path / "o2"), "--crop", "30"])
    assert run_prepare(args) == 2
    assert "--crop 30" in capsys.readouterr().err


def test_the_cli_module_imports_without_torch_or_numpy() -> None:
    # `basicsr --help` builds this parser; it must stay light.
    heavy = "{'torch', 'numpy', 'cv2', 'basicsr'}"
    code = f"import sys, srode_plugins.data.prepare; print(sorted({heavy} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.slow
def test_worker_processes_write_the_same_files_as_one_process(hr_dir: Path, tmp_path: Path) -> None:
    inline = prepare_dataset(hr_dir, tmp_path / "inline", scale=4, crop=32, step=16, workers=1)
    pooled = prepare_dataset(hr_dir, tmp_path / "pooled", scale=4, crop=32, step=16, workers=2)
    names = sorted(p.name for p in inline.hr.iterdir())
    assert names == sorted(p.name for p in pooled.hr.iterdir())
    for name in names:
        assert np.array_equal(read(inline.hr / name), read(pooled.hr / name))
        assert np.array_equal(read(inline.lr / name), read(pooled.lr / name))
