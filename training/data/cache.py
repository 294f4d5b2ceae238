"""Decode once per study: every image decoded, cropped and resized once into a memory-mapped uint8 array on disk.

Keyed by the dataset's content fingerprint + the input geometry (the resolved (H, W) and the center crop) +
decode version, so a changed file, a new size or crop or a new decoder gives a new cache (``image_size: S`` and
``[S, S]`` are one geometry and share an entry). Several workers may build or read it at once: one builds under
an exclusive file lock and publishes with atomic renames (the ``.json`` last, as the commit marker); the others
wait on the lock and then read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError, one_line
from ..files import atomic_path, file_lock, write_atomic
from .images import fit_image
from .samples import Samples

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["DecodedImages", "decode_cached", "default_cache_dir"]

log = logging.getLogger(__name__)
DECODE_VERSION = "2:pil-rgb:center-crop:cv2-area-linear:hw"


@dataclass
class DecodedImages:
    images: np.ndarray            # [N, H, W, 3] uint8, memory-mapped read-only
    bad: dict[int, str]           # index -> reason, for items that could not be decoded
    path: Path
    built: bool                   # True when this call decoded the files, False when it reused the cache
    seconds: float


def default_cache_dir() -> Path:
    return Path(os.environ.get("SEARCH_CACHE_DIR") or Path.home() / ".cache" / "imgsearch")


def _geometry(data_cfg: DataConfig) -> str:
    """What fit_image does to every image, as text: the resolved size and the crop."""
    (h, w), crop = data_cfg.hw, data_cfg.center_crop
    return f"{h}x{w}|crop={'none' if crop is None else f'{crop[0]}x{crop[1]}'}"


def _key(samples: Samples, data_cfg: DataConfig) -> str:
    return hashlib.sha256(f"{samples.key}|{_geometry(data_cfg)}|{DECODE_VERSION}".encode()).hexdigest()[:32]


def _read(npy: Path, meta: Path) -> tuple[np.ndarray, dict[int, str]]:
    bad = {int(k): v for k, v in json.loads(meta.read_text())["bad"].items()}
    return np.load(npy, mmap_mode="r"), bad


def decode_cached(samples: Samples, data_cfg: DataConfig, cache_dir: Path | None = None) -> DecodedImages:
    """Every image of ``samples`` as ``fit_image(img, data_cfg)`` gives it (data_cfg: any data config; only its
    ``hw`` and ``center_crop`` matter here). Raises DataError, and publishes nothing, when an image is smaller
    than the crop."""
    t0 = time.perf_counter()
    root = Path(cache_dir or default_cache_dir())
    root.mkdir(parents=True, exist_ok=True)
    key = _key(samples, data_cfg)
    npy, meta = root / f"{key}.npy", root / f"{key}.json"
    if meta.exists():
        images, bad = _read(npy, meta)
        return DecodedImages(images, bad, npy, False, time.perf_counter() - t0)
    with file_lock(root / f"{key}.lock"):  # released when this process dies, too
        if meta.exists():  # another worker built it while we waited
            images, bad = _read(npy, meta)
            return DecodedImages(images, bad, npy, False, time.perf_counter() - t0)
        bad = _build(samples, data_cfg, npy, meta)
    images, bad = _read(npy, meta)
    dt = time.perf_counter() - t0
    log.info("decoded %d images at %s into %s in %.1fs", len(samples), _geometry(data_cfg), npy, dt)
    return DecodedImages(images, bad, npy, True, dt)


def _build(samples: Samples, data_cfg: DataConfig, npy: Path, meta: Path) -> dict[int, str]:
    h, w = data_cfg.hw
    bad: dict[int, str] = {}
    too_small: dict[int, str] = {}
    sizes: dict[int, tuple[int, int]] = {}
    with atomic_path(npy) as tmp:  # a failed build leaves nothing behind
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(samples), h, w, 3))

        def one(i: int) -> None:
            try:
                img = samples.load(i)
                sizes[i] = img.shape[:2]
                out[i] = fit_image(img, data_cfg)
            except DataError as e:  # smaller than the crop: a readable image the config does not fit
                too_small[i] = str(e)
            except (OSError, ValueError) as e:  # unreadable, truncated, empty: recorded, policy applied later
                bad[i] = one_line(e, with_type=False)

        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
            list(pool.map(one, range(len(samples))))
        if too_small:
            raise _crop_error(samples, too_small, sizes)
        out.flush()
    write_atomic(meta, json.dumps({"n": len(samples), "geometry": _geometry(data_cfg), "key": samples.key,
                                   "bad": {str(k): v for k, v in sorted(bad.items())}}))
    return bad


def _crop_error(samples: Samples, too_small: dict[int, str], sizes: dict[int, tuple[int, int]]) -> DataError:
    """One line: the first image (in file order) smaller than the crop, how many are, and the largest crop that
    fits every image. Always an error, whatever data.on_bad_image says: that policy drops files that cannot be
    read, and dropping readable images for their size would silently change the data set (all the photos of one
    camera, say)."""
    first = min(too_small)
    fits = f"[{min(s[0] for s in sizes.values())}, {min(s[1] for s in sizes.values())}]"
    return DataError(f"{samples.names[first]}: {too_small[first]}; {len(too_small)} of {len(samples)} images "
                     f"are smaller than the crop; use a data.center_crop of at most {fits} (fits every image) "
                     "or remove the small images (data.on_bad_image: skip does not drop them: they are readable)")
