"""`basicsr data prepare`: an HR folder -> modcropped HR + MATLAB-bicubic LR folders, optional sub-images and LMDB.

Output layout under ``--out`` (PNG, 8-bit BGR as BasicSR reads it; an LR file has its HR file's name)::

    HR/<stem>.png                    modcropped to a multiple of the scale (or its sub-images)
    LR_bicubic/X<scale>/<stem>.png   MATLAB-style bicubic downscale (basicsr.utils.matlab_functions.imresize)
    HR.lmdb, LR_bicubic/X<scale>.lmdb  with --lmdb (keys = file stems, meta_info.txt as BasicSR expects)

Sub-images follow BasicSR's ``scripts/data_preparation/extract_subimages.py``: ``crop`` x ``crop`` windows every
``step`` pixels, plus one window flush with the far edge when more than ``thresh`` pixels would be left over;
they are named ``<stem>_s001.png``, ``<stem>_s002.png``, ... row by row. The LR sub-image is the matching
``crop/scale`` window of the LR image of the whole (modcropped) HR image, as BasicSR crops its LR folders.
Everything is written into a hidden temporary folder under ``--out`` first and moved into place at the end,
so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srode_plugins.errors import SrodeError

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MIN_SCALE, MAX_SCALE = 2, 8
PNG_COMPRESSION = 3  # what BasicSR's extract_subimages.py writes with


class DataError(SrodeError, ValueError):
    """A data preparation request is wrong: names the argument, the value and the fix."""


@dataclass(frozen=True)
class PreparedPaths:
    """Folders written by `prepare_dataset`.

    hr / lr: PNG folders whose file names match one to one (BasicSR PairedImageDataset, filename_tmpl '{}').
    count: number of HR/LR pairs. hr_lmdb / lr_lmdb: LMDB folders (None without ``lmdb=True``).
    skipped: HR file names that produced no sub-image because they are smaller than the crop.
    """

    hr: Path
    lr: Path
    scale: int
    count: int
    hr_lmdb: Path | None = None
    lr_lmdb: Path | None = None
    skipped: tuple[str, ...] = ()

    def dataset_options(self) -> dict[str, Any]:
        """PairedImageDataset keys that read these folders (LMDB when it was made, else the PNG folders)."""
        if self.hr_lmdb is not None and self.lr_lmdb is not None:
            gt, lq, backend = self.hr_lmdb, self.lr_lmdb, "lmdb"
        else:
            gt, lq, backend = self.hr, self.lr, "disk"
        return {
            "type": "PairedImageDataset",
            "dataroot_gt": str(gt),
            "dataroot_lq": str(lq),
            "filename_tmpl": "{}",
            "io_backend": {"type": backend},
        }


def modcrop(img: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the bottom and right edges of an (H, W[, C]) image so H and W are multiples of `multiple`."""
    height = img.shape[0] - img.shape[0] % multiple
    width = img.shape[1] - img.shape[1] % multiple
    return img[:height, :width, ...]


def bicubic_downscale(img: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(img, 1/scale, 'bicubic')`` (antialiased) of a uint8 (H, W, C) image.

    H and W must be multiples of `scale`; returns uint8 (H/scale, W/scale, C), rounded as BasicSR's
    ``tensor2img`` does. Channel order is kept (the filter acts per channel).
    """
    import numpy as np

    from srode_plugins import compat

    compat.apply()  # makes `import basicsr` work on current torchvision

    # isort: split
    from basicsr.utils.matlab_functions import imresize

    if img.shape[0] % scale or img.shape[1] % scale:
        raise DataError(f"image of size {img.shape[1]}x{img.shape[0]} is not a multiple of scale {scale}; modcrop it")
    low = imresize(img.astype(np.float64) / 255.0, 1 / scale)
    return (np.clip(low, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def subimage_origins(length: int, crop: int, step: int, thresh: int = 0) -> list[int]:
    """Start offsets (pixels) of sub-image windows along one axis of `length` pixels, as BasicSR's
    extract_subimages: every `step` from 0 while a `crop` window fits, plus ``length - crop`` when more than
    `thresh` pixels would be left uncovered. Empty when ``length < crop``."""
    if length < crop:
        return []
    origins = list(range(0, length - crop + 1, step))
    if length - (origins[-1] + crop) > thresh:
        origins.append(length - crop)
    return origins


def _read_bgr(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: not a readable image; re-export it or remove it from the --hr folder")
    return img


def _write_png(path: Path, img: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]):
        raise OSError(f"could not write {path}")


def _prepare_one(
    src: Path, hr_out: Path, lr_out: Path, scale: int, crop: int | None, step: int | None, thresh: int
) -> int:
    """Write the HR/LR pair(s) of one source image; return how many pairs were written."""
    hr = modcrop(_read_bgr(src), scale)
    if min(hr.shape[:2]) == 0:
        raise DataError(f"{src}: {hr.shape[1]}x{hr.shape[0]} pixels is smaller than scale {scale}; remove it")
    lr = bicubic_downscale(hr, scale)
    if crop is None or step is None:
        _write_png(hr_out / f"{src.stem}.png", hr)
        _write_png(lr_out / f"{src.stem}.png", lr)
        return 1
    lr_crop = crop // scale
    index = 0
    for top in subimage_origins(hr.shape[0], crop, step, thresh):
        for left in subimage_origins(hr.shape[1], crop, step, thresh):
            index += 1
            name = f"{src.stem}_s{index:03d}.png"
            _write_png(hr_out / name, hr[top : top + crop, left : left + crop])
            lr_top, lr_left = top // scale, left // scale
            _write_png(lr_out / name, lr[lr_top : lr_top + lr_crop, lr_left : lr_left + lr_crop])
    return index


def _worker_context() -> multiprocessing.context.BaseContext:
    # A fork server imports torch + basicsr once and forks the workers from that clean, single-threaded
    # process (a plain fork of a caller that already ran torch ops can hang); spawn where it is unavailable.
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # its resize applies the BasicSR fixes, then imports basicsr
    return context


def _limit_worker_threads() -> None:
    # Several worker processes each running torch's default thread pool would oversubscribe the cores.
    import torch

    torch.set_num_threads(1)


def _list_images(hr_dir: Path) -> list[Path]:
    if not hr_dir.is_dir():
        raise DataError(f"--hr {hr_dir}: no such folder; pass the folder that holds the high-resolution images")
    images = sorted(p for p in hr_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"--hr {hr_dir}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} directly inside it)")
    stems: dict[str, Path] = {}
    for image in images:
        if image.stem in stems:
            raise DataError(
                f"--hr {hr_dir}: {stems[image.stem].name} and {image.name} would both become {image.stem}.png; "
                "rename one of them"
            )
        stems[image.stem] = image
    return images


def _check_lmdb_keys(images: Sequence[Path]) -> None:
    # BasicSR keys an LMDB by the file stem (ASCII) and reads meta_info.txt with `line.split('.')[0]`.
    for image in images:
        if not image.stem.isascii() or "." in image.stem or any(ch.isspace() for ch in image.stem):
            raise DataError(
                f"--lmdb: {image.name} cannot be an LMDB key (BasicSR needs ASCII stems without dots or spaces); "
                "rename the file or prepare without --lmdb"
            )


def _check_geometry(scale: int, crop: int | None, step: int | None, thresh: int) -> int | None:
    """Validate scale / crop / step / thresh; return the step to use (defaults to `crop`)."""
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise DataError(
            f"--scale {scale}: the scale must be an integer from {MIN_SCALE} to {MAX_SCALE}, e.g. --scale 4"
        )
    if crop is None:
        if step is not None or thresh:
            flag = f"--step {step}" if step is not None else f"--thresh {thresh}"
            raise DataError(f"{flag} needs --crop: pass the sub-image size too, e.g. --crop 480 --step 240")
        return None
    if crop <= 0 or crop % scale:
        raise DataError(
            f"--crop {crop}: the sub-image size must be a positive multiple of --scale {scale} so the LR crop is "
            f"{crop}/{scale} pixels; use e.g. --crop {max(scale, crop - crop % scale)}"
        )
    step = crop if step is None else step
    if step <= 0 or step % scale:
        raise DataError(
            f"--step {step}: the sub-image step must be a positive multiple of --scale {scale} so LR windows stay "
            f"aligned; use e.g. --step {max(scale, step - step % scale)}"
        )
    if thresh < 0:
        raise DataError(f"--thresh {thresh}: must be 0 or more (pixels left uncovered before an edge crop is added)")
    return step


def _claim_target(path: Path) -> None:
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise DataError(f"--out: {path} already exists; choose another --out folder or delete it")


def prepare_dataset(
    hr_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    scale: int,
    crop: int | None = None,
    step: int | None = None,
    lmdb: bool = False,
    workers: int | None = None,
    thresh: int = 0,
) -> PreparedPaths:
    """Make a BasicSR paired dataset from a folder of HR images.

    hr_dir: images (png/jpg/bmp/tif/webp) read as 8-bit colour. scale: 2..8. crop / step / thresh: sub-image
    size, stride and edge threshold in HR pixels (multiples of `scale`; step defaults to crop). lmdb: also
    write LMDB copies. workers: processes for the bicubic step (default: min(4, CPU count)).
    Returns the folders written (see the module docstring for the layout).
    """
    from tqdm import tqdm

    hr_dir, out_dir = Path(hr_dir), Path(out_dir)
    step = _check_geometry(scale, crop, step, thresh)
    images = _list_images(hr_dir)
    if lmdb:
        _check_lmdb_keys(images)
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise DataError(f"--workers {workers}: must be at least 1")

    lr_rel = Path("LR_bicubic") / f"X{scale}"
    targets = [Path("HR"), lr_rel] + ([Path("HR.lmdb"), lr_rel.with_suffix(".lmdb")] if lmdb else [])
    for target in targets:
        _claim_target(out_dir / target)

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out_dir))
    try:
        hr_out, lr_out = staging / "HR", staging / lr_rel
        hr_out.mkdir()
        lr_out.mkdir(parents=True)
        counts: dict[Path, int] = {}
        with tqdm(total=len(images), unit="image", desc=f"HR -> x{scale} bicubic") as progress:
            if min(workers, len(images)) == 1:
                for image in images:
                    counts[image] = _prepare_one(image, hr_out, lr_out, scale, crop, step, thresh)
                    progress.update()
            else:
                context = _worker_context()
                with ProcessPoolExecutor(
                    min(workers, len(images)), mp_context=context, initializer=_limit_worker_threads
                ) as pool:
                    jobs = {
                        pool.submit(_prepare_one, image, hr_out, lr_out, scale, crop, step, thresh): image
                        for image in images
                    }
                    for job in as_completed(jobs):
                        counts[jobs[job]] = job.result()
                        progress.update()
        skipped = tuple(image.name for image in images if counts[image] == 0)
        count = sum(counts.values())
        if count == 0:
            raise DataError(f"--crop {crop}: every image in {hr_dir} is smaller than the crop; use a smaller --crop")
        for name in skipped:
            tqdm.write(f"skipped {name}: smaller than --crop {crop}")
        if lmdb:
            _write_lmdb(hr_out, staging / "HR.lmdb")
            _write_lmdb(lr_out, staging / lr_rel.with_suffix(".lmdb"))
        for target in targets:
            (out_dir / target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / target, out_dir / target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    return PreparedPaths(
        hr=out_dir / "HR",
        lr=out_dir / lr_rel,
        scale=scale,
        count=count,
        hr_lmdb=out_dir / "HR.lmdb" if lmdb else None,
        lr_lmdb=out_dir / lr_rel.with_suffix(".lmdb") if lmdb else None,
        skipped=skipped,
    )


def _write_lmdb(png_dir: Path, lmdb_dir: Path) -> None:
    import cv2

    from srode_plugins import compat

    compat.apply()  # makes `import basicsr` work on current torchvision

    # isort: split
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    names = sorted(p.name for p in png_dir.iterdir())
    # make_lmdb_from_imgs sizes the map from the first image alone; size it from all of them (raw bytes, x2).
    raw_bytes = 0
    for name in names:
        img = cv2.imread(str(png_dir / name), cv2.IMREAD_UNCHANGED)
        raw_bytes += img.nbytes
    make_lmdb_from_imgs(
        str(png_dir),
        str(lmdb_dir),
        names,
        [Path(name).stem for name in names],
        map_size=2 * raw_bytes + (64 << 20),
    )


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `basicsr data prepare` arguments to `parser`."""
    parser.add_argument("--hr", required=True, type=Path, metavar="DIR", help="folder of high-resolution images")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (HR/, LR_bicubic/)")
    parser.add_argument("--scale", type=int, default=4, help="downscaling factor, 2..8 (default: 4)")
    parser.add_argument("--crop", type=int, metavar="PX", help="cut HR into PX x PX sub-images (multiple of scale)")
    parser.add_argument("--step", type=int, metavar="PX", help="stride between sub-images (default: --crop)")
    parser.add_argument(
        "--thresh", type=int, default=0, metavar="PX", help="add an edge sub-image when more than PX pixels remain"
    )
    parser.add_argument("--lmdb", action="store_true", help="also write HR.lmdb and LR_bicubic/X<scale>.lmdb")
    parser.add_argument("--workers", type=int, metavar="N", help="worker processes (default: min(4, CPU count))")


def run_prepare(args: argparse.Namespace) -> int:
    """Run `basicsr data prepare` with parsed `args`; print where the data went. Returns the exit status."""
    try:
        prepared = prepare_dataset(
            args.hr,
            args.out,
            args.scale,
            crop=args.crop,
            step=args.step,
            lmdb=args.lmdb,
            workers=args.workers,
            thresh=args.thresh,
        )
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{prepared.count} HR/LR pairs (x{prepared.scale}) in {prepared.hr} and {prepared.lr}")
    options = prepared.dataset_options()
    print("Use them in an option file under datasets.train:")
    print(f"    type: {options['type']}")
    print(f"    dataroot_gt: {options['dataroot_gt']}")
    print(f"    dataroot_lq: {options['dataroot_lq']}")
    print(f"    filename_tmpl: '{options['filename_tmpl']}'")
    print(f"    io_backend: {{type: {options['io_backend']['type']}}}")
    return 0
