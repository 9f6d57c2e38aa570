"""The decoded-image cache: same pixels as a fresh decode, copies out, a byte budget, and the engine switch."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from srode_plugins.data import decode_cache
from srode_plugins.data.demo import demo_dataset


@pytest.fixture(autouse=True)
def _no_cache_left_behind() -> None:
    yield
    decode_cache.uninstall()


def _png(seed: int, size: int = 12) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def test_cached_decode_equals_a_fresh_decode_and_hands_out_copies() -> None:
    from basicsr.utils.img_util import imfrombytes

    cache = decode_cache.DecodeCache(10**6, imfrombytes)
    content = _png(0)
    first = cache(content, float32=True)
    np.testing.assert_array_equal(first, imfrombytes(content, float32=True))
    first[:] = -1.0  # BasicSR's augment flips crops in place: the cached array must not change
    second = cache(content, float32=True)
    np.testing.assert_array_equal(second, imfrombytes(content, float32=True))
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
    # the flag and the dtype are part of the key
    assert cache(content, flag="grayscale").shape == (12, 12)
    assert cache(content).dtype == np.uint8
    assert len(cache) == 3


def test_cache_stops_storing_at_its_byte_budget_but_keeps_decoding() -> None:
    from basicsr.utils.img_util import imfrombytes

    one_image = 12 * 12 * 3 * 4  # float32 bytes of one 12x12 RGB image
    cache = decode_cache.DecodeCache(2 * one_image, imfrombytes)
    images = [_png(seed) for seed in range(4)]
    for content in images:
        np.testing.assert_array_equal(cache(content, float32=True), imfrombytes(content, float32=True))
    assert len(cache) == 2 and cache.used_bytes == 2 * one_image
    cache(images[3], float32=True)
    assert cache.hits == 0 and cache.misses == 5  # the third and fourth images were never stored


def test_install_routes_basicsr_datasets_through_the_cache_with_identical_samples() -> None:
    import basicsr.data.paired_image_dataset as paired
    from basicsr.utils.img_util import imfrombytes as original

    paths = demo_dataset(2)
    opt = {"name": "d", "type": "PairedImageDataset", "dataroot_gt": str(paths.train_hr),
           "dataroot_lq": str(paths.train_lr), "filename_tmpl": "{}", "io_backend": {"type": "disk"},
           "gt_size": 32, "use_hflip": True, "use_rot": True, "scale": 2, "phase": "train"}

    def samples() -> list[dict]:
        dataset = paired.PairedImageDataset(dict(opt, io_backend={"type": "disk"}))
        random.seed(3)
        return [dataset[i % len(dataset)] for i in range(2 * len(dataset))]

    plain = samples()
    cache = decode_cache.install(64 * 2**20)
    assert paired.imfrombytes is cache and decode_cache.active() is cache
    cached = samples()
    # two passes over the files, two images per sample: the first pass decodes each file once, the second hits
    assert cache.misses == len(plain) and cache.hits == len(plain)
    for a, b in zip(plain, cached, strict=True):
        torch.testing.assert_close(a["gt"], b["gt"], rtol=0, atol=0)
        torch.testing.assert_close(a["lq"], b["lq"], rtol=0, atol=0)
    decode_cache.uninstall()
    assert paired.imfrombytes is original and decode_cache.active() is None


def test_zero_budget_installs_nothing() -> None:
    import basicsr.data.paired_image_dataset as paired
    from basicsr.utils.img_util import imfrombytes as original

    assert decode_cache.install(0) is None
    assert paired.imfrombytes is original


@pytest.mark.parametrize(("value", "problem"), [(-1, "0 switches the cache off"), (1.5, "must be a whole number"),
                                              ("big", "must be a number"), (True, "must be a number")])
def test_a_bad_cache_size_names_the_file_key_and_value(tmp_path: Path, value: object, problem: str) -> None:
    from srode_plugins.engine import setup
    from srode_plugins.errors import OptionError

    opts = _train_options(tmp_path, {"decode_cache_mb": value})
    with pytest.raises(OptionError, match=r"train\.decode_cache_mb") as error:
        setup.validate_common(opts, is_train=True)
    assert str(opts.file) in str(error.value) and repr(value) in str(error.value) and problem in str(error.value)


def test_cache_size_written_as_a_string_is_read_as_a_number_and_absent_means_the_default(tmp_path: Path) -> None:
    from srode_plugins.engine import setup
    from srode_plugins.engine.train import DEFAULT_DECODE_CACHE_MB, _decode_cache_mb

    quoted = _train_options(tmp_path / "quoted", {"decode_cache_mb": "512"})
    setup.validate_common(quoted, is_train=True)
    assert _decode_cache_mb(quoted.opt["train"]) == 512
    absent = _train_options(tmp_path / "absent", {})
    setup.validate_common(absent, is_train=True)
    assert _decode_cache_mb(absent.opt["train"]) == DEFAULT_DECODE_CACHE_MB == 1024


def _train_options(folder: Path, train_extra: dict[str, object]):
    import yaml

    from srode_plugins import options

    opt = {"name": "cache", "model_type": "SRModel", "network_g": {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3},
           "datasets": {"train": {"type": "PairedImageDataset", "batch_size_per_gpu": 2}},
           "train": {"total_iter": 10, **train_extra}}
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "train.yml"
    file.write_text(yaml.safe_dump(opt))
    return options.load(file)


def test_training_loader_workers_persist_across_epochs_so_their_caches_do() -> None:
    from basicsr.data import build_dataloader, build_dataset

    from srode_plugins.engine.setup import fill_defaults

    paths = demo_dataset(2)
    pair = {"type": "PairedImageDataset", "dataroot_gt": str(paths.train_hr), "dataroot_lq": str(paths.train_lr),
            "filename_tmpl": "{}"}
    opt = {"scale": 2, "datasets": {
        "train": {**pair, "name": "t", "gt_size": 32, "use_hflip": False, "use_rot": False,
                  "num_worker_per_gpu": 1, "batch_size_per_gpu": 2},
        "train_inline": {**pair, "name": "i", "gt_size": 32, "num_worker_per_gpu": 0, "batch_size_per_gpu": 2},
        "val": {**pair, "name": "v"}}}
    fill_defaults(opt, is_train=True)
    train = opt["datasets"]["train"]
    assert train["persistent_workers"] is True
    assert "persistent_workers" not in opt["datasets"]["train_inline"]  # DataLoader refuses it without workers
    assert "persistent_workers" not in opt["datasets"]["val"]
    loader = build_dataloader(build_dataset(train), train, num_gpu=0, dist=False, sampler=None, seed=0)
    assert loader.persistent_workers


def test_the_cache_budget_is_shared_out_between_the_main_process_and_the_loader_workers() -> None:
    from srode_plugins.engine.train import _decode_cache_share

    def opt(workers: object) -> dict:
        return {"datasets": {"train": {"num_worker_per_gpu": workers}, "val": {}}}

    assert _decode_cache_share(1024, opt(0)) == 1024 * 2**20
    assert _decode_cache_share(1024, opt(None)) == 1024 * 2**20
    assert _decode_cache_share(1024, opt(3)) == 256 * 2**20
    assert _decode_cache_share(0, opt(3)) == 0
    assert _decode_cache_share(600, {"datasets": {"val": {}}}) == 600 * 2**20  # `basicsr train` without a train set
