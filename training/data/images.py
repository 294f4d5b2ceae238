"""Read any common image file as an RGB uint8 array, and fit it to the model's input size."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError, one_line

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["IMAGE_EXTENSIONS", "unreadable_text", "read_rgb", "crop_center", "resize_to", "resize_square", "fit_image"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


SHOWN = 5  # unreadable files named in a message; the rest go to a list file


def unreadable_text(bad: dict[str, str], total: int, list_file: Path) -> str:
    """'a.png: cannot read image (why)' for one file; for several, how many and which (the first SHOWN, and
    ``list_file`` with every one of them, written here, when there are more)."""
    if len(bad) == 1:
        name, why = next(iter(bad.items()))
        return f"{name}: cannot read image ({why}); 1 unreadable image of {total}"
    shown = ", ".join(f"{name} ({why})" for name, why in list(bad.items())[:SHOWN])
    more = ""
    if len(bad) > SHOWN:
        list_file.parent.mkdir(parents=True, exist_ok=True)
        list_file.write_text("".join(f"{name}\t{why}\n" for name, why in bad.items()), encoding="utf-8")
        more = f"; all {len(bad)} are listed in {list_file}"
    return f"cannot read images: {len(bad)} of {total} are unreadable: {shown}{more}"


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
        raise OSError(f"not a readable image ({one_line(e)})") from e


def crop_center(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The (H, W) middle of ``img``, offsets rounded down as albumentations' CenterCrop does.

    Raises DataError (without the file's name, which the caller adds) when the image is smaller than the crop.
    """
    h, w = img.shape[:2]
    ch, cw = hw
    if ch > h or cw > w:
        raise DataError(f"image is {h}x{w} (HxW), smaller than data.center_crop = [{ch}, {cw}]")
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top:top + ch, left:left + cw]


def resize_to(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``img`` resized to (H, W): area averaging when both sides shrink (no aliasing), else bilinear."""
    h, w = img.shape[:2]
    if (h, w) == tuple(hw):
        return np.ascontiguousarray(img)
    interp = cv2.INTER_AREA if hw[0] < h and hw[1] < w else cv2.INTER_LINEAR
    return cv2.resize(img, (hw[1], hw[0]), interpolation=interp)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    return resize_to(img, (size, size))


def fit_image(img: np.ndarray, data_cfg: DataConfig) -> np.ndarray:
    """What the decode cache stores for one image, and what predict feeds the model: one geometry for both.
    ``data.center_crop`` (if set) first, then the resize to ``data.hw``; the crop is taken from the upright
    image (read_rgb applies the EXIF orientation), so it means what a viewer shows."""
    if data_cfg.center_crop is not None:
        img = crop_center(img, data_cfg.center_crop)
    return resize_to(img, data_cfg.hw)
