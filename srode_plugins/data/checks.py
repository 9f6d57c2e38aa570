"""Dataset checks run once before training: what would otherwise hang, crash mid-run or score the wrong pixels.

For the disk layouts of BasicSR's PairedImageDataset (LR/HR folders matched through `filename_tmpl`, or a
`meta_info_file`), SingleImageDataset and RealESRGANDataset (`meta_info` listing HR files) every image is
decoded once with OpenCV (threads, outside the training decode cache, which is keyed on the bytes the loaders
read later). Errors name the option key, the file and the fix:
empty folders, unreadable / truncated / non-image files, LR/HR count mismatches and unmatched names, LR/HR
sizes that are not `scale` apart (train: exactly; val/test: up to the mod-crop remainder BasicSR trims),
LR images smaller than the training crop, a training batch larger than the training set, and
`dataset_enlarge_ratio` <= 0. Other dataset types and LMDB backends are skipped with a log line.
"""

from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srode_plugins.errors import DatasetError

CHECKED_TYPES = ("PairedImageDataset", "SingleImageDataset", "RealESRGANDataset")


@dataclass(frozen=True)
class ImageFile:
    """One file a dataset will read, with the option key that points at its folder."""

    path: Path
    key: str


@dataclass(frozen=True)
class Pair:
    """An (LR, HR) pair; `lq` is None for HR-only datasets."""

    gt: ImageFile | None
    lq: ImageFile | None


def check_datasets(opt: dict[str, Any], logger: logging.Logger | None = None) -> None:
    """Check every dataset in `opt['datasets']` (after path resolution); raise DatasetError on the first
    problem. Logs how many images were checked, and which datasets were skipped and why."""
    logger = logger or logging.getLogger("basicsr")
    file = opt.get("opt_file")
    scale = int(opt.get("scale") or 1)
    started = time.perf_counter()
    checked = 0
    for phase, dataset in opt["datasets"].items():
        prefix = f"datasets.{phase}"
        is_train = phase.split("_")[0] == "train"
        if is_train:
            _check_enlarge_ratio(dataset, prefix, file)
        skip = _skip_reason(dataset)
        if skip:
            logger.warning(f"Dataset check: skipped file checks for {prefix} ({skip}).")
            continue
        pairs = _pairs(dataset, prefix, file)
        if is_train:
            _check_batch_fits(len(pairs), dataset, prefix, opt, file)
        sizes = _decoded_sizes([f for pair in pairs for f in (pair.gt, pair.lq) if f is not None], file)
        for pair in pairs:
            if pair.gt is not None and pair.lq is not None:
                _check_pair_sizes(pair.gt, pair.lq, sizes, scale, dataset, is_train, prefix, file)
        checked += len(sizes)
    logger.info(f"Dataset check: {checked} image(s) readable, LR/HR pairs consistent "
                f"({time.perf_counter() - started:.1f} s).")


def _skip_reason(dataset: dict[str, Any]) -> str | None:
    backend = (dataset.get("io_backend") or {}).get("type", "disk")
    if backend != "disk":
        return f"io_backend '{backend}': only disk folders are checked"
    if dataset.get("type") not in CHECKED_TYPES:
        return f"type '{dataset.get('type')}': only {', '.join(CHECKED_TYPES)} layouts are checked"
    return None


def _check_enlarge_ratio(dataset: dict[str, Any], prefix: str, file: str | None) -> None:
    ratio = dataset.get("dataset_enlarge_ratio", 1)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
        raise DatasetError(f"value {ratio!r}: each epoch repeats the training set this many times and 0 or less "
                           "gives epochs without iterations; use a whole number >= 1 (1: no repetition)",
                           file=file, key=f"{prefix}.dataset_enlarge_ratio")


def _check_batch_fits(count: int, dataset: dict[str, Any], prefix: str, opt: dict[str, Any],
                      file: str | None) -> None:
    # EnlargedSampler gives each process ceil(count * ratio / world) samples and the training loader drops the
    # last incomplete batch: fewer samples than one batch means no iteration, ever.
    batch = dataset.get("batch_size_per_gpu")
    ratio = dataset.get("dataset_enlarge_ratio", 1)
    world = int(opt.get("world_size") or 1)
    per_process = math.ceil(count * ratio / world)
    if isinstance(batch, int) and not isinstance(batch, bool) and batch > per_process:
        spread = f" spread over {world} processes" if world > 1 else ""
        raise DatasetError(f"value {batch}: the batch is larger than the training set ({count} image(s) x "
                           f"dataset_enlarge_ratio {ratio}{spread} = {per_process} per process), so no full batch "
                           f"is ever drawn; use batch_size_per_gpu <= {per_process} or raise dataset_enlarge_ratio",
                           file=file, key=f"{prefix}.batch_size_per_gpu")


def _pairs(dataset: dict[str, Any], prefix: str, file: str | None) -> list[Pair]:
    kind = dataset.get("type")
    if kind == "RealESRGANDataset":
        gt_root = _folder(dataset, "dataroot_gt", prefix, file)
        names = _meta_names(dataset.get("meta_info"), f"{prefix}.meta_info", file)
        return [Pair(ImageFile(gt_root / name, f"{prefix}.meta_info"), None) for name in names]
    if kind == "SingleImageDataset":
        lq_root = _folder(dataset, "dataroot_lq", prefix, file)
        if dataset.get("meta_info_file"):
            names = _meta_names(dataset["meta_info_file"], f"{prefix}.meta_info_file", file)
        else:
            names = _image_names(lq_root, f"{prefix}.dataroot_lq", file)
        return [Pair(None, ImageFile(lq_root / name, f"{prefix}.dataroot_lq")) for name in names]
    return _paired(dataset, prefix, file)


def _paired(dataset: dict[str, Any], prefix: str, file: str | None) -> list[Pair]:
    """PairedImageDataset's matching: each HR name `<stem><ext>` has the LR file `filename_tmpl.format(stem)<ext>`."""
    gt_root = _folder(dataset, "dataroot_gt", prefix, file)
    lq_root = _folder(dataset, "dataroot_lq", prefix, file)
    template = dataset.get("filename_tmpl") or "{}"
    if dataset.get("meta_info_file"):
        gt_names = _meta_names(dataset["meta_info_file"], f"{prefix}.meta_info_file", file)
        lq_names = None
    else:
        gt_names = _image_names(gt_root, f"{prefix}.dataroot_gt", file)
        lq_names = set(_image_names(lq_root, f"{prefix}.dataroot_lq", file))
        if len(lq_names) != len(gt_names):
            raise DatasetError(f"'{lq_root}' holds {len(lq_names)} file(s) but dataroot_gt '{gt_root}' holds "
                               f"{len(gt_names)}: every HR image needs exactly one LR image"
                               f"{_unmatched(gt_names, lq_names, template)}; remove the extra files",
                               file=file, key=f"{prefix}.dataroot_lq")
    pairs = []
    for name in gt_names:
        stem, ext = os.path.splitext(os.path.basename(name))
        lq_name = f"{template.format(stem)}{ext}"
        if lq_names is not None and lq_name not in lq_names:
            raise DatasetError(f"no LR image '{lq_name}' in '{lq_root}' for the HR image '{gt_root / name}' "
                               f"(filename_tmpl '{template}'); add it, or fix datasets filename_tmpl",
                               file=file, key=f"{prefix}.dataroot_lq")
        pairs.append(Pair(ImageFile(gt_root / name, f"{prefix}.dataroot_gt"),
                          ImageFile(lq_root / lq_name, f"{prefix}.dataroot_lq")))
    return pairs


def _unmatched(gt_names: list[str], lq_names: set[str], template: str) -> str:
    expected = {f"{template.format(os.path.splitext(n)[0])}{os.path.splitext(n)[1]}" for n in gt_names}
    extra = sorted(lq_names - expected)[:3]
    missing = sorted(expected - lq_names)[:3]
    parts = ([f"LR files without HR: {', '.join(extra)}"] if extra else []) + (
        [f"missing LR files: {', '.join(missing)}"] if missing else [])
    return f" ({'; '.join(parts)})" if parts else ""


def _folder(dataset: dict[str, Any], key: str, prefix: str, file: str | None) -> Path:
    value = dataset.get(key)
    if not isinstance(value, str) or not Path(value).is_dir():
        raise DatasetError(f"value {value!r} is not a folder; point it at the image folder",
                           file=file, key=f"{prefix}.{key}")
    return Path(value)


def _image_names(folder: Path, key: str, file: str | None) -> list[str]:
    # BasicSR's scandir: the regular, non-hidden files of the folder itself.
    names = sorted(e.name for e in os.scandir(folder) if not e.name.startswith(".") and e.is_file())
    if not names:
        raise DatasetError(f"the folder '{folder}' holds no images; put the images there (or prepare them with "
                           "`basicsr data prepare`), or train on the embedded demo data with --demo",
                           file=file, key=key)
    return names


def _meta_names(meta_file: Any, key: str, file: str | None) -> list[str]:
    if not isinstance(meta_file, str) or not Path(meta_file).is_file():
        raise DatasetError(f"value {meta_file!r} is not a file; point it at the list of image names",
                           file=file, key=key)
    try:
        lines = Path(meta_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read '{meta_file}' ({exc}); write it as UTF-8 text, one image name per line",
                           file=file, key=key) from None
    names = [line.strip().split(" ")[0] for line in lines if line.strip()]
    if not names:
        raise DatasetError(f"'{meta_file}' lists no images; write one image name per line", file=file, key=key)
    return names


def _decoded_sizes(images: list[ImageFile], file: str | None) -> dict[Path, tuple[int, int]]:
    """(height, width) of each image, decoding all of them; the first unreadable one raises DatasetError."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(_decode_size, [image.path for image in images]))
    sizes = {}
    for image, result in zip(images, results):
        if isinstance(result, str):
            raise DatasetError(f"'{image.path}' {result}; replace or remove the file (and its LR/HR partner)",
                               file=file, key=image.key)
        sizes[image.path] = result
    return sizes


def _decode_size(path: Path) -> tuple[int, int] | str:
    """(height, width), or why the file cannot be used (cv2 gives None for what it cannot decode)."""
    import cv2
    import numpy as np

    try:
        content = path.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not content:
        return "is empty"
    img = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return "is not a readable image (corrupt, truncated, or not an image file)"
    return int(img.shape[0]), int(img.shape[1])


def _check_pair_sizes(gt: ImageFile, lq: ImageFile, sizes: dict[Path, tuple[int, int]], scale: int,
                      dataset: dict[str, Any], is_train: bool, prefix: str, file: str | None) -> None:
    (gh, gw), (lh, lw) = sizes[gt.path], sizes[lq.path]
    # Training crops need HR exactly scale x LR; evaluation trims HR to scale x LR (the mod-crop remainder only).
    exact = (gh, gw) == (lh * scale, lw * scale)
    if not exact and (is_train or (gh // scale, gw // scale) != (lh, lw)):
        rule = "exactly" if is_train else "(up to the mod-crop remainder)"
        raise DatasetError(f"the HR image '{gt.path}' is {gw}x{gh} but its LR image '{lq.path}' is "
                           f"{lw}x{lh}: at scale {scale} the HR must be {lw * scale}x{lh * scale} {rule}; "
                           "regenerate the LR images at this scale (`basicsr data prepare`) or fix `scale`",
                           file=file, key=lq.key)
    crop = dataset.get("gt_size")
    if is_train and isinstance(crop, int) and (lh * scale < crop or lw * scale < crop):
        raise DatasetError(f"the LR image '{lq.path}' is {lw}x{lh}, smaller than the training crop "
                           f"(gt_size {crop} / scale {scale} = {crop // scale} LR pixels); use a gt_size <= "
                           f"{min(lh, lw) * scale} or remove the small image", file=file, key=f"{prefix}.gt_size")
