"""The embedded demo dataset: photos bundled inside the scikit-image wheel, as HR + bicubic LR pairs.

Only image files shipped in the installed ``skimage/data`` folder are read (never a `skimage.data` fetcher,
which may download). On first use every photo is centre-cropped to at most 480 x 480 pixels with both sides a
multiple of 12 (so x2, x3 and x4 all divide), converted to 3 channels, and downscaled x2, x3 and x4 with
MATLAB-style bicubic (`bicubic_downscale`). The cache folder (about 5 MB) is::

    <root>/train/HR/<photo>.png                  <root>/val/HR/<photo>.png
    <root>/train/LR_bicubic/X{2,3,4}/<photo>.png <root>/val/LR_bicubic/X{2,3,4}/<photo>.png
    <root>/manifest.json                         written last: a folder with it is complete

It is built in a temporary sibling folder and renamed into place, so concurrent or interrupted builds never
leave a half-made cache. Default root: ``$SRODE_CACHE/demo/v<DEMO_DATA_VERSION>``, or
``${XDG_CACHE_HOME:-~/.cache}/srode/demo/v<DEMO_DATA_VERSION>`` when SRODE_CACHE is unset.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srode_plugins.data.prepare import DataError, bicubic_downscale

DEMO_DATA_VERSION = "1"
DEMO_SCALES = (2, 3, 4)
MAX_SIDE = 480
SIDE_MULTIPLE = 12  # lcm of DEMO_SCALES

# Fixed split, files of skimage/data. Held out: three colour photos of distinct scenes (cat, coffee cup, rocket).
# Left out: synthetic or graphic images (chessboard, color, phantom, logo, horse, text, page), tiny or motion
# blurred ones (microaneurysms, clock_motion, multipage, the gif), cell (mostly flat background) and
# motorcycle_right (the stereo twin of motorcycle_left: a near duplicate).
TRAIN_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "retina.jpg",
)
VAL_PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg")
SPLITS = {"train": TRAIN_PHOTOS, "val": VAL_PHOTOS}

DEMO_URI_PREFIX = "demo://"
_DEMO_URI = re.compile(r"demo://(?P<split>train|val)/(?:HR|LR_bicubic/X(?P<scale>[234]))/?")
DEMO_URI_FORMS = (
    "demo://train/HR",
    "demo://train/LR_bicubic/X{2,3,4}",
    "demo://val/HR",
    "demo://val/LR_bicubic/X{2,3,4}",
)


class DemoCacheError(DataError):
    """The demo cache folder exists but is not a complete demo cache of this version."""


@dataclass(frozen=True)
class DemoPaths:
    """Folders of the demo data at one scale: HR and LR PNGs with identical file names."""

    train_hr: Path
    train_lr: Path
    val_hr: Path
    val_lr: Path
    scale: int


def default_demo_root() -> Path:
    """The demo cache folder used when none is given (see the module docstring)."""
    if os.environ.get("SRODE_CACHE"):
        base = Path(os.environ["SRODE_CACHE"]).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "srode"
    return base / "demo" / f"v{DEMO_DATA_VERSION}"


def demo_dataset(scale: int = 4, root: Path | str | None = None) -> DemoPaths:
    """Folders of the demo data at `scale` (2, 3 or 4), preparing the cache under `root` on first use."""
    if scale not in DEMO_SCALES:
        raise DataError(f"scale {scale}: the demo data has x2, x3 and x4 LR images; use scale 2, 3 or 4")
    root = _ensure_cache(Path(root) if root is not None else default_demo_root())
    return DemoPaths(
        train_hr=root / "train" / "HR",
        train_lr=root / "train" / "LR_bicubic" / f"X{scale}",
        val_hr=root / "val" / "HR",
        val_lr=root / "val" / "LR_bicubic" / f"X{scale}",
        scale=scale,
    )


def smallest_train_side(paths: DemoPaths) -> int:
    """The shortest side, in HR pixels, of the demo training photos: the largest HR crop they all allow."""
    train_sizes = _read_manifest(paths.train_hr.parents[1])["hr_sizes"]["train"].values()
    return min(min(size) for size in train_sizes)


def train_meta_info(paths: DemoPaths) -> Path:
    """A meta-info file listing the demo training photos (one HR file name a line), as datasets that read their
    image list from `meta_info` (RealESRGANDataset) expect. Written once beside the HR folder, atomically."""
    target = paths.train_hr.parent / "meta_info.txt"
    if not target.is_file():
        listing = "".join(f"{Path(photo).stem}.png\n" for photo in TRAIN_PHOTOS)
        with tempfile.NamedTemporaryFile("w", dir=target.parent, suffix=".tmp", delete=False) as tmp:
            tmp.write(listing)
        os.replace(tmp.name, target)
    return target


def resolve_demo_uri(uri: str, root: Path | str | None = None) -> Path:
    """The cache folder a ``demo://`` dataset root stands for (e.g. ``demo://val/LR_bicubic/X4``)."""
    match = _DEMO_URI.fullmatch(uri)
    if match is None:
        raise DataError(f"{uri!r} is not a demo data folder; the accepted forms are {', '.join(DEMO_URI_FORMS)}")
    scale = int(match["scale"]) if match["scale"] else DEMO_SCALES[-1]
    paths = demo_dataset(scale, root)
    if match["split"] == "train":
        return paths.train_lr if match["scale"] else paths.train_hr
    return paths.val_lr if match["scale"] else paths.val_hr


def demo_options(
    scale: int = 4,
    *,
    gt_size: int = 96,
    batch_size: int = 8,
    dataset_enlarge_ratio: int = 50,
    root: Path | str | None = None,
) -> dict[str, dict[str, Any]]:
    """BasicSR dataset options ``{"train": ..., "val": ...}`` (PairedImageDataset) for the demo data.

    gt_size: HR training patch side in pixels (a multiple of `scale`, at most the smallest training photo side).
    batch_size: training patches per iteration. dataset_enlarge_ratio: passes over the photos per epoch.
    Data roots are resolved cache folders (the cache is prepared if needed).
    """
    paths = demo_dataset(scale, root)
    smallest_side = smallest_train_side(paths)
    if gt_size % scale or not scale <= gt_size <= smallest_side:
        raise DataError(
            f"gt_size {gt_size}: the HR patch must be a multiple of scale {scale} and at most {smallest_side} "
            "(the smallest demo training photo side); use e.g. gt_size 96"
        )
    train = {
        **_paired_options("demo_train", "train", paths.train_hr, paths.train_lr, scale),
        "gt_size": gt_size,
        "use_hflip": True,
        "use_rot": True,
        "use_shuffle": True,
        "num_worker_per_gpu": 0,
        "batch_size_per_gpu": batch_size,
        "dataset_enlarge_ratio": dataset_enlarge_ratio,
    }
    return {"train": train, "val": _paired_options("demo_val", "val", paths.val_hr, paths.val_lr, scale)}


def _paired_options(name: str, phase: str, hr: Path, lr: Path, scale: int) -> dict[str, Any]:
    # A fresh io_backend dict each time: PairedImageDataset pops its "type" key.
    return {
        "name": name,
        "type": "PairedImageDataset",
        "phase": phase,
        "scale": scale,
        "dataroot_gt": str(hr),
        "dataroot_lq": str(lr),
        "filename_tmpl": "{}",
        "io_backend": {"type": "disk"},
    }


def skimage_data_dir() -> Path:
    """The ``data`` folder inside the installed scikit-image package."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise DataError("the demo data comes from scikit-image, which is not installed; pip install scikit-image")
    return Path(spec.origin).parent / "data"


def _read_manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


def _is_complete(root: Path) -> bool:
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        return False
    if _read_manifest(root).get("version") != DEMO_DATA_VERSION:
        return False
    for split, photos in SPLITS.items():
        for photo in photos:
            name = f"{Path(photo).stem}.png"
            folders = [root / split / "HR"] + [root / split / "LR_bicubic" / f"X{s}" for s in DEMO_SCALES]
            if not all((folder / name).is_file() for folder in folders):
                return False
    return True


def _ensure_cache(root: Path) -> Path:
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
        try:
            _build_cache(staging)
            staging.chmod(0o755)  # mkdtemp makes it owner-only; the cache is plain public data
            try:
                os.rename(staging, root)
            except OSError:
                if not root.exists():
                    raise
                # Another process finished the same build first; its complete cache is used below.
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not _is_complete(root):
        raise DemoCacheError(
            f"{root} is not a complete srode demo cache (version {DEMO_DATA_VERSION}); delete that folder and it "
            "is rebuilt on next use, or set SRODE_CACHE to another folder"
        )
    return root


def _load_photo(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    if not path.is_file():
        raise DataError(
            f"{path} is missing: the demo data uses only the photos bundled in the scikit-image package; "
            "reinstall it with pip install --force-reinstall scikit-image"
        )
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])  # BGR, the channel order BasicSR reads PNGs in


def _centre_crop(img: Any) -> Any:
    height = min(img.shape[0], MAX_SIDE) // SIDE_MULTIPLE * SIDE_MULTIPLE
    width = min(img.shape[1], MAX_SIDE) // SIDE_MULTIPLE * SIDE_MULTIPLE
    top, left = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
    return img[top : top + height, left : left + width]


def _write_png(path: Path, img: Any) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 6]):
        raise OSError(f"could not write {path}")


def _build_cache(staging: Path) -> None:
    from tqdm import tqdm

    source_dir = skimage_data_dir()
    manifest: dict[str, Any] = {
        "version": DEMO_DATA_VERSION,
        "scales": list(DEMO_SCALES),
        "scikit_image": importlib.metadata.version("scikit-image"),
        "splits": {split: list(photos) for split, photos in SPLITS.items()},
        "hr_sizes": {split: {} for split in SPLITS},
        "sha256": {},
    }
    jobs = [(split, photo) for split, photos in SPLITS.items() for photo in photos]
    for split, photo in tqdm(jobs, desc="Preparing srode demo data (once)", unit="photo"):
        source = source_dir / photo
        hr = _centre_crop(_load_photo(source))
        name = f"{Path(photo).stem}.png"
        _write_png(staging / split / "HR" / name, hr)
        for scale in DEMO_SCALES:
            _write_png(staging / split / "LR_bicubic" / f"X{scale}" / name, bicubic_downscale(hr, scale))
        manifest["hr_sizes"][split][name] = [hr.shape[0], hr.shape[1]]
        manifest["sha256"][photo] = hashlib.sha256(source.read_bytes()).hexdigest()
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
