"""Data-source registry: digits (built in), imagefolder, csv (multi-class or multi-label), mask layout."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from ..config import CsvData, DigitsData, ImageFolderData, MaskData
from ..errors import DataError
from ..registry import Registry
from .curate import curate
from .images import IMAGE_EXTENSIONS, read_rgb
from .samples import Samples, fingerprint_files

__all__ = ["SOURCES", "load_samples"]

SOURCES: Registry = Registry("data source")


def load_samples(cfg) -> Samples:
    """The data set ``cfg`` names, as the user curated it (data.exclude, data.relabel: training/data/curate.py)."""
    return curate(SOURCES.get(cfg.source)(cfg), cfg.exclude, cfg.relabel)


def _file_samples(paths: list[str], targets: np.ndarray, classes: list[str], extra: str,
                  groups: np.ndarray | None = None, multilabel: bool = False) -> Samples:
    return Samples(names=paths, load=lambda i: read_rgb(paths[i]), targets=targets, classes=classes,
                   key=fingerprint_files(paths, extra), groups=groups, multilabel=multilabel)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


@SOURCES.register("digits")
def _digits(cfg: DigitsData) -> Samples:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes) as RGB: no download."""
    from sklearn.datasets import load_digits

    d = load_digits()
    if cfg.limit is not None and cfg.limit > len(d.target):
        raise DataError(f"data.limit = {cfg.limit} but the built-in digits have {len(d.target)} images; use at "
                          f"most {len(d.target)}, or leave data.limit out for all of them")
    n = cfg.limit or len(d.target)
    grey = (d.images[:n] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    return Samples(names=[f"digits[{i}]" for i in range(n)], load=lambda i: rgb[i],
                   targets=d.target[:n].astype(np.int64), classes=[str(c) for c in range(10)],
                   key=f"sklearn-digits-{n}")


@SOURCES.register("imagefolder")
def _imagefolder(cfg: ImageFolderData) -> Samples:
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"data.root: folder '{root}' does not exist; "
                        "point it at a folder with one sub-folder per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"data.root: '{root}' has {len(classes)} class folder(s); "
                        "imagefolder needs one sub-folder per class, at least 2")
    paths, targets = [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if _is_image(p))
        if not files:
            raise DataError(f"data.root: class folder '{root / name}' holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove it")
        paths += [str(p) for p in files]
        targets += [c] * len(files)
    return _file_samples(paths, np.asarray(targets, np.int64), classes, f"imagefolder|{classes}")


@SOURCES.register("csv")
def _csv(cfg: CsvData) -> Samples:
    f = Path(cfg.file)
    if not f.is_file():
        raise DataError(f"data.file: CSV '{f}' does not exist; "
                        f"pass the path of a CSV with a '{cfg.image_column}' column")
    with f.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        rows = list(reader)
    needed = [cfg.image_column, *cfg.label_columns] + ([cfg.group_column] if cfg.group_column else [])
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(f"{f}: missing column(s) {', '.join(missing)}; "
                        f"the header has {', '.join(header) or 'nothing'}; "
                        "fix the header or set data.image_column / data.label_columns / data.group_column to its names")
    if not rows:
        raise DataError(f"{f}: no rows; add one row per image")
    root = Path(cfg.root) if cfg.root else f.parent
    paths = [str(root / r[cfg.image_column]) for r in rows]
    for i, p in enumerate(paths):
        if not Path(p).is_file() and cfg.on_bad_image == "fail":
            raise DataError(f"{f}: row {i + 2}: image '{p}' does not exist; "
                            "fix the path or set data.on_bad_image: skip")
    groups = np.asarray([r[cfg.group_column] for r in rows]) if cfg.group_column else None
    extra = f"csv|{cfg.label_columns}|{cfg.classes}"
    if len(cfg.label_columns) > 1:  # multi-label: one 0/1 column per label
        y = np.zeros((len(rows), len(cfg.label_columns)), np.float32)
        for i, r in enumerate(rows):
            for j, c in enumerate(cfg.label_columns):
                v = r[c].strip()
                if v not in ("0", "1", "0.0", "1.0"):
                    raise DataError(f"{f}: row {i + 2}, column '{c}' = {v!r}; multi-label columns hold 0 or 1")
                y[i, j] = float(v)
        return _file_samples(paths, y, list(cfg.label_columns), extra, groups, multilabel=True)
    col = cfg.label_columns[0]
    labels = [r[col].strip() for r in rows]
    classes = list(cfg.classes) if cfg.classes else sorted(set(labels))
    index = {c: k for k, c in enumerate(classes)}
    for i, v in enumerate(labels):
        if v not in index:
            raise DataError(f"{f}: row {i + 2}, column '{col}' = {v!r} is not in data.classes "
                            f"({', '.join(classes)}); add it or fix the row")
    if len(classes) < 2:
        raise DataError(f"{f}: column '{col}' has {len(classes)} class(es); classification needs at least 2")
    return _file_samples(paths, np.asarray([index[v] for v in labels], np.int64), classes, extra, groups)


MASK_DIR = re.compile(r"^(?P<id>[^_]+)_(?P<gender>male|female)_(?P<race>[^_]+)_(?P<age>\d{1,3})$")
MASK_STATES = {"mask": 0, "incorrect_mask": 1, "normal": 2}  # mask1..mask5 -> 0
GENDERS = ("male", "female")
AGES = ("young", "middle", "old")


def mask_class_names() -> list[str]:
    states = ("wear", "incorrect", "not_worn")
    return [f"{m}/{g}/{a}" for m in states for g in GENDERS for a in AGES]


@SOURCES.register("mask")
def _mask(cfg: MaskData) -> Samples:
    """``images/<id>_<gender>_<race>_<age>/{mask1..5,incorrect_mask,normal}.<ext>``: class = mask*6 + gender*3 + age."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"data.root: folder '{root}' does not exist; point it at the mask 'images' folder")
    people = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    if not people:
        raise DataError(f"data.root: '{root}' holds no person folders like 000001_female_Asian_45")
    young, old = cfg.age_bins
    paths, targets, groups = [], [], []
    for d in people:
        m = MASK_DIR.match(d.name)
        if not m:
            raise DataError(f"data.root: folder '{d.name}' is not <id>_<male|female>_<race>_<age> "
                            "(e.g. 000001_female_Asian_45); rename or move it")
        age = int(m["age"])
        a = 0 if age < young else (1 if age < old else 2)
        g = GENDERS.index(m["gender"])
        for p in sorted(d.iterdir()):
            if not _is_image(p):
                continue
            stem = p.stem.lower()
            state = 0 if re.fullmatch(r"mask\d*", stem) else MASK_STATES.get(stem)
            if state is None:
                raise DataError(f"{p}: file name '{p.stem}' is not mask1..mask5, incorrect_mask or normal; "
                                "rename or remove it")
            paths.append(str(p))
            targets.append(state * 6 + g * 3 + a)
            groups.append(m["id"])
    if not paths:
        raise DataError(f"data.root: '{root}' person folders hold no images")
    return _file_samples(paths, np.asarray(targets, np.int64), mask_class_names(), f"mask|{cfg.age_bins}",
                         np.asarray(groups))
