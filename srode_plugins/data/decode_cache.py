"""Decoded-image cache for BasicSR datasets: decode each training image once per process, not once per sample.

BasicSR's datasets read a file's bytes through a FileClient and decode them with `basicsr.utils.imfrombytes`
on every `__getitem__`. For the small datasets people iterate on (and the demo), PNG decoding is most of the
data-loading cost, and on a CPU machine the loader workers take those cycles from the training step.

`install(max_bytes)` replaces `imfrombytes` (in basicsr.utils and in every loaded module that imported it by
name, plugin datasets included) with a version that keys the decoded array on a digest of the file's bytes,
so it works with any dataset and io backend that decodes through `imfrombytes`. Cached arrays are returned
as copies (BasicSR's `augment` flips crops in place) and are bit-identical to a fresh decode. Each process
(every DataLoader worker) holds its own cache up to `max_bytes`; past that, images are decoded as before.
The engine turns it on for `basicsr train` (option `train.decode_cache_mb`, default 1024 MiB for the run, shared
out equally between the main process and the training loader workers; 0 switches it off).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

_original: Callable[..., np.ndarray] | None = None
_cache: DecodeCache | None = None


class DecodeCache:
    """Decoded arrays keyed by (digest of the encoded bytes, flag, float32), up to `max_bytes` of arrays."""

    def __init__(self, max_bytes: int, decode: Callable[..., np.ndarray]) -> None:
        self.max_bytes = int(max_bytes)
        self.decode = decode
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0
        self._arrays: dict[tuple[bytes, str, bool], np.ndarray] = {}

    def __call__(self, content: bytes, flag: str = "color", float32: bool = False) -> np.ndarray:
        key = (hashlib.blake2b(content, digest_size=16).digest(), flag, bool(float32))
        cached = self._arrays.get(key)
        if cached is not None:
            self.hits += 1
            return cached.copy()
        self.misses += 1
        img = self.decode(content, flag=flag, float32=float32)
        if img is not None and self.used_bytes + img.nbytes <= self.max_bytes:
            self._arrays[key] = img.copy()
            self.used_bytes += img.nbytes
        return img

    def __len__(self) -> int:
        return len(self._arrays)


def _modules_holding(func: Callable[..., Any]) -> list[Any]:
    return [m for name, m in list(sys.modules.items())
            if m is not None and getattr(m, "imfrombytes", None) is func and not name.startswith(__name__)]


def install(max_bytes: int) -> DecodeCache | None:
    """Route every `imfrombytes` through a decoded-image cache of `max_bytes`; a no-op for 0. Idempotent."""
    global _original, _cache
    uninstall()
    if max_bytes <= 0:
        return None
    import basicsr.utils.img_util as img_util

    _original = img_util.imfrombytes
    _cache = DecodeCache(max_bytes, _original)
    for module in _modules_holding(_original):
        module.imfrombytes = _cache
    return _cache


def uninstall() -> None:
    """Put the original `imfrombytes` back wherever the cache replaced it."""
    global _original, _cache
    if _cache is not None and _original is not None:
        for module in _modules_holding(_cache):
            module.imfrombytes = _original
    _original = _cache = None


def active() -> DecodeCache | None:
    return _cache
