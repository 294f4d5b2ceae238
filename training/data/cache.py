"""Decode once per study: every image decoded and resized once into a memory-mapped uint8 array on disk.

Keyed by the dataset's content fingerprint + image size + decode version, so a changed file, a new size or a
new decoder gives a new cache. Several workers may build or read it at once: one builds under an exclusive
file lock and publishes with atomic renames (the ``.json`` last, as the commit marker); the others wait on the
lock and then read.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import resize_square
from .samples import Samples

__all__ = ["DecodedImages", "decode_cached", "default_cache_dir"]

log = logging.getLogger(__name__)
DECODE_VERSION = "1:pil-rgb:cv2-area-linear:square"


@dataclass
class DecodedImages:
    images: np.ndarray            # [N, S, S, 3] uint8, memory-mapped read-only
    bad: dict[int, str]           # index -> reason, for items that could not be decoded
    path: Path
    built: bool                   # True when this call decoded the files, False when it reused the cache
    seconds: float


def default_cache_dir() -> Path:
    return Path(os.environ.get("SEARCH_CACHE_DIR") or Path.home() / ".cache" / "imgsearch")


def _key(samples: Samples, size: int) -> str:
    return hashlib.sha256(f"{samples.key}|{size}|{DECODE_VERSION}".encode()).hexdigest()[:32]


def _read(npy: Path, meta: Path) -> tuple[np.ndarray, dict[int, str]]:
    bad = {int(k): v for k, v in json.loads(meta.read_text())["bad"].items()}
    return np.load(npy, mmap_mode="r"), bad


def decode_cached(samples: Samples, size: int, cache_dir: Path | None = None) -> DecodedImages:
    t0 = time.perf_counter()
    root = Path(cache_dir or default_cache_dir())
    root.mkdir(parents=True, exist_ok=True)
    key = _key(samples, size)
    npy, meta = root / f"{key}.npy", root / f"{key}.json"
    if meta.exists():
        images, bad = _read(npy, meta)
        return DecodedImages(images, bad, npy, False, time.perf_counter() - t0)
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even if this process dies
        if meta.exists():  # another worker built it while we waited
            images, bad = _read(npy, meta)
            return DecodedImages(images, bad, npy, False, time.perf_counter() - t0)
        bad = _build(samples, size, npy, meta)
    images, bad = _read(npy, meta)
    dt = time.perf_counter() - t0
    log.info("decoded %d images at %dpx into %s in %.1fs", len(samples), size, npy, dt)
    return DecodedImages(images, bad, npy, True, dt)


def _build(samples: Samples, size: int, npy: Path, meta: Path) -> dict[int, str]:
    tmp = npy.with_suffix(f".tmp{os.getpid()}.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(samples), size, size, 3))
    bad: dict[int, str] = {}

    def one(i: int) -> None:
        try:
            out[i] = resize_square(samples.load(i), size)
        except (OSError, ValueError) as e:  # unreadable, truncated, empty: recorded, policy applied later
            bad[i] = str(e) or e.__class__.__name__

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(samples))))
    out.flush()
    os.replace(tmp, npy)
    tmp_meta = meta.with_suffix(f".tmp{os.getpid()}")
    tmp_meta.write_text(json.dumps({"n": len(samples), "size": size, "key": samples.key,
                                    "bad": {str(k): v for k, v in sorted(bad.items())}}))
    os.replace(tmp_meta, meta)
    return bad
