"""Small synthetic image datasets on disk whose classes are learnable, for the training tests.

Class ``k`` of a single-label set is a distinct colour *and* a distinct stripe pattern (orientation / period)
plus noise, so it stays learnable after colour-destroying augmentations (ToGray). A multi-label image holds,
for each label that is on, a coloured patch at that label's own position.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "PALETTE", "class_image", "label_image", "save_image", "make_imagefolder", "make_csv_multiclass",
    "make_csv_multilabel", "make_mask_tree", "mask_class", "Person", "write_grey", "write_rgba",
    "write_palette", "write_empty", "write_truncated_jpeg", "write_not_an_image", "base_config",
]

PALETTE = [
    (230, 40, 40), (40, 200, 60), (40, 70, 230), (235, 210, 40), (200, 50, 200), (40, 210, 210),
    (250, 140, 30), (120, 60, 20), (140, 140, 140), (250, 250, 250), (20, 20, 20), (120, 200, 120),
    (120, 20, 60), (20, 90, 90), (170, 170, 60), (60, 20, 130), (250, 150, 180), (90, 140, 250),
]
ROOT = Path(__file__).resolve().parent.parent  # the repository
MASK_STEMS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
MASK_EXTS = (".jpg", ".jpeg", ".png")


# ---------------------------------------------------------------- single images

def class_image(k: int, size: int, rng: np.random.Generator, noise: float = 12.0) -> np.ndarray:
    """HxWx3 uint8: colour PALETTE[k] on stripes whose orientation is k % 4 and period 2 + k // 4 (x2)."""
    yy, xx = np.mgrid[0:size, 0:size]
    period = 2 * (2 + (k // 4) % 3)
    coord = (yy, xx, yy + xx, yy - xx + size)[k % 4]
    on = (coord // (period // 2)) % 2 == 0
    base = np.asarray(PALETTE[k % len(PALETTE)], np.float32)
    img = np.where(on[..., None], base, base * 0.25)
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def label_image(on: list[bool], size: int, rng: np.random.Generator, noise: float = 10.0) -> np.ndarray:
    """Grey noisy background; label j that is on paints a PALETTE[j] patch in cell j of a 2x2 (or 3x3) grid."""
    img = np.full((size, size, 3), 100.0, np.float32) + rng.normal(0, noise, (size, size, 3))
    cells = 2 if len(on) <= 4 else 3
    c = size // cells
    for j, flag in enumerate(on):
        if flag:
            r0, c0 = (j // cells) * c, (j % cells) * c
            img[r0 + 1:r0 + c - 1, c0 + 1:c0 + c - 1] = PALETTE[j % len(PALETTE)]
    return np.clip(img, 0, 255).astype(np.uint8)


def save_image(arr: np.ndarray, path: str | Path, mode: str | None = None) -> Path:
    """Write ``arr`` (RGB) to ``path``; ``mode`` L / RGBA / P stores it as grey, with alpha or as a palette."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr, "RGB")
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        im = im.convert("RGBA")
        im.putalpha(Image.fromarray(np.full(arr.shape[:2], 128, np.uint8)))
    elif mode == "P":
        im = im.quantize(colors=16)
    elif mode not in (None, "RGB"):
        raise ValueError(f"unknown mode {mode}")
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF", ".webp": "WEBP"}
    fmt = formats[p.suffix.lower()]
    if fmt == "JPEG" and im.mode not in ("RGB", "L"):
        raise ValueError(f"JPEG cannot hold mode {im.mode}; use .png")
    kw = {"quality": 95} if fmt == "JPEG" else {}
    im.save(p, fmt, **kw)
    return p


def write_grey(path: str | Path, value: int = 90, size: int = 16) -> Path:
    """An 8-bit grey (mode L) image of one value."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8), "L").save(p)
    return p


def write_rgba(path: str | Path, rgb=(200, 30, 40), alpha: int = 60, size: int = 16) -> Path:
    """An RGBA PNG of one colour with partial transparency."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((size, size, 4), np.uint8)
    a[..., :3], a[..., 3] = rgb, alpha
    Image.fromarray(a, "RGBA").save(p)
    return p


def write_palette(path: str | Path, rgb=(20, 160, 220), size: int = 16) -> Path:
    """A palette (mode P) PNG whose every pixel is palette entry 1 = ``rgb``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.ones((size, size), np.uint8), "P")
    im.putpalette([0, 0, 0, *rgb] + [0] * (256 * 3 - 6))
    im.save(p)
    return p


def write_empty(path: str | Path) -> Path:
    """A zero-byte file with an image extension."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


def write_truncated_jpeg(path: str | Path, size: int = 32, keep: float = 0.5, seed: int = 0) -> Path:
    """A JPEG whose byte stream is cut after ``keep`` of its length (the header is intact)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    p.write_bytes(data[: int(len(data) * keep)])
    return p


def write_not_an_image(path: str | Path) -> Path:
    """Text bytes with an image extension."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"this is not an image\n" * 4)
    return p


# ---------------------------------------------------------------- datasets

def make_imagefolder(root: str | Path, n_classes: int = 4, n_per_class: int | list[int] = 12, size: int = 20,
                     exts: tuple[str, ...] = (".png",), modes: tuple[str | None, ...] = (None,),
                     seed: int = 0) -> tuple[Path, list[str]]:
    """``root/<class>/<i>.<ext>``; ext and mode cycle over ``exts`` / ``modes`` (a JPEG never gets RGBA/P).
    Returns (root, sorted class names)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = [n_per_class] * n_classes if isinstance(n_per_class, int) else list(n_per_class)
    classes = [f"class_{k}" for k in range(n_classes)]
    for k, name in enumerate(classes):
        for i in range(counts[k]):
            ext = exts[i % len(exts)]
            mode = modes[i % len(modes)]
            if ext in (".jpg", ".jpeg") and mode in ("RGBA", "P"):
                mode = None
            save_image(class_image(k, size, rng), root / name / f"{i:03d}{ext}", mode)
    return root, classes



def _write_csv(f: Path, rows: list[dict]) -> Path:
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return f

def make_csv_multiclass(root: str | Path, n_classes: int = 4, n_per_class: int = 12, size: int = 20,
                        n_groups: int | None = None, seed: int = 0, image_column: str = "path",
                        label_column: str = "label", group_column: str = "group",
                        ext: str = ".png") -> Path:
    """``root/labels.csv`` with relative paths under ``root/img``; labels are words, ``n_groups`` adds a group
    column (image i of every class belongs to group i % n_groups). Returns the CSV path."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "hazel"]
    rows = []
    for k in range(n_classes):
        for i in range(n_per_class):
            rel = f"img/{k}_{i:03d}{ext}"
            save_image(class_image(k, size, rng), root / rel)
            row = {image_column: rel, label_column: names[k]}
            if n_groups:
                row[group_column] = f"g{i % n_groups}"
            rows.append(row)
    return _write_csv(root / "labels.csv", rows)


def make_csv_multilabel(root: str | Path, labels: list[str] | tuple[str, ...] = ("red", "green", "blue"),
                        n: int = 48, size: int = 20, seed: int = 0, image_column: str = "path") -> Path:
    """``root/labels.csv``: one 0/1 column per label; label j on = PALETTE[j] patch in cell j. Every label is on
    in about half the images (and both on and off at least twice). Returns the CSV path."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    on = rng.random((n, len(labels))) < 0.5
    for j in range(len(labels)):  # guarantee positives and negatives for every label
        on[j % n, j], on[(j + 1) % n, j] = True, True
        on[(j + 2) % n, j], on[(j + 3) % n, j] = False, False
    rows = []
    for i in range(n):
        rel = f"img/{i:03d}.png"
        save_image(label_image(list(on[i]), size, rng), root / rel)
        rows.append({image_column: rel, **{lab: str(int(on[i, j])) for j, lab in enumerate(labels)}})
    return _write_csv(root / "labels.csv", rows)


@dataclass(frozen=True)
class Person:
    id: str
    gender: str
    race: str
    age: int

    @property
    def folder(self) -> str:
        return f"{self.id}_{self.gender}_{self.race}_{self.age}"


def mask_class(stem: str, gender: str, age: int, age_bins: tuple[int, int] = (30, 60)) -> int:
    """The expected class: mask*6 + gender*3 + age, with mask1..5 = 0, incorrect_mask = 1, normal = 2."""
    m = 0 if stem.startswith("mask") else (1 if stem == "incorrect_mask" else 2)
    g = 0 if gender == "male" else 1
    a = 0 if age < age_bins[0] else (1 if age < age_bins[1] else 2)
    return m * 6 + g * 3 + a


def make_mask_tree(root: str | Path, n_people: int = 12, size: int = 16, seed: int = 0,
                   ages: list[int] | None = None, genders: list[str] | None = None,
                   junk: bool = False) -> tuple[Path, list[Person]]:
    """``root/images/<id>_<male|female>_<race>_<age>/{mask1..mask5,incorrect_mask,normal}.<ext>`` with the
    extension cycling over .jpg/.jpeg/.png; each image's pattern is its 18-way class. ``junk`` adds the
    ``._name`` files and a ``._`` folder that macOS archives leave behind (they must be ignored).
    Returns (the images folder, the people)."""
    rng = np.random.default_rng(seed)
    images = Path(root) / "images"
    default_ages = [20, 45, 65, 25, 35, 70, 18, 59, 60, 29, 30, 80]
    people = []
    for i in range(n_people):
        age = ages[i % len(ages)] if ages else default_ages[i % len(default_ages)]
        gender = genders[i % len(genders)] if genders else ("male", "female")[i % 2]
        p = Person(f"{i + 1:06d}", gender, ("Asian", "White", "Black")[i % 3], age)
        people.append(p)
        d = images / p.folder
        for j, stem in enumerate(MASK_STEMS):
            ext = MASK_EXTS[(i + j) % len(MASK_EXTS)]
            save_image(class_image(mask_class(stem, gender, age), size, rng), d / f"{stem}{ext}")
            if junk:
                (d / f"._{stem}{ext}").write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")
    if junk:
        (images / "._000001_female_Asian_45").mkdir(parents=True, exist_ok=True)
    return images, people


# ---------------------------------------------------------------- configs

def base_config(data: dict, tmp: Path | None = None, **sections) -> dict:
    """A small CPU config as a plain dict: test_resnet, adamw, 2 epochs, batch 16, one thread.
    ``sections`` (model=..., loss=..., optimizer=..., scheduler=..., train=..., augment=...) update
    the defaults key by key; ``tmp`` gives the data a private decode cache."""
    cfg = {
        "seed": 0,
        "data": {"image_size": 16, "val_fraction": 0.25, **data},
        "model": {"name": "test_resnet", "pretrained": False},
        "loss": {"name": "ce"},
        "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01},
        "scheduler": {"name": "none"},
        "train": {"epochs": 2, "batch_size": 16, "device": "cpu", "num_threads": 1, "precision": "fp32"},
    }
    if tmp is not None:
        cfg["data"].setdefault("cache_dir", str(Path(tmp) / "cache"))
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg
