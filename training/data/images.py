"""Read any common image file as an RGB uint8 array, and fit it to the model's input size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "read_rgb", "resize_square", "fit_image"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_rgb(path: str | Path) -> np.ndarray:
    """HxWx3 uint8; grey, RGBA (alpha dropped), palette all become RGB.

    Raises OSError with the reason for empty, truncated or non-image files.
    """
    p = Path(path)
    if p.stat().st_size == 0:
        raise OSError("file is empty (0 bytes)")
    try:
        with Image.open(p) as im:
            im.load()
            im = ImageOps.exif_transpose(im)  # phone photos: upright, as viewers show them
            if im.mode.startswith("I;16") or im.mode in ("I", "F"):  # 16-bit / float grey: scale, don't clip
                a = np.asarray(im, dtype=np.float32)
                top = 65535.0 if im.mode.startswith("I;16") else max(float(a.max()), 1.0)
                grey = (a * (255.0 / top)).clip(0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=-1)
            if im.mode in ("P", "PA"):  # palette with transparency: via RGBA, as PIL recommends
                im = im.convert("RGBA")
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise OSError(f"not a readable image ({e.__class__.__name__}: {e})") from e


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return np.ascontiguousarray(img)
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def fit_image(img: np.ndarray, data_cfg) -> np.ndarray:
    """What the decode cache stores for one image, and what predict feeds the model: one geometry for both."""
    return resize_square(img, data_cfg.image_size)
