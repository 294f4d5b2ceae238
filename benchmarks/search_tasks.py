"""The generated tasks of benchmarks/search_efficiency.py: a suite that differs in what makes the search space hard,
so that a default chosen on one of them can be checked on the others.

- ``noisy12``: a noisy, low-contrast 12-class imagefolder; most of the optimizer / learning-rate space scores
  near chance and a small region scores well (the task the default was first tuned on).
- ``mask18``: the mask competition's shape: 18 classes = mask (wear 5 photos, incorrect 1, not worn 1) x gender
  x age (young, middle, and a rare old), grouped by person (no person on both sides of the split), each person
  with a tint of their own. Imbalanced, with a rare class, and much of the space learns nothing in the epochs a
  trial has.
- ``multilabel``: 4 labels, each image holds one to three of them (a 2x2 grid of patches), trained with bce.

Each task builds its images once (seeded: the same data for every strategy and seed) and gives the training
config's ``data`` section and what else its config needs (a loss, a val fraction).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # imagegen: the tests' synthetic classes

from imagegen import class_image, label_image, save_image  # noqa: E402

__all__ = ["NoisyTask", "MaskTask", "MultiLabelTask", "TASKS"]


class _Built:
    """A task's images live under ``cache/data-<key>``; ``.complete`` marks a finished build."""
    key: str

    def build(self, cache: Path) -> dict:
        root = cache / f"data-{self.key}"
        if not (root / ".complete").is_file():
            self._write(root, np.random.default_rng(0))
            (root / ".complete").write_text("")
        return self.data(root)

    def _write(self, root: Path, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def data(self, root: Path) -> dict:
        raise NotImplementedError

    def training(self) -> dict:
        """Sections of the training config beside ``data`` (merged over the benchmark's own)."""
        return {}


class NoisyTask(_Built):
    """``classes`` classes of ``per_class`` images, each its class's colour and stripes (tests/imagegen.py) at
    ``contrast`` around mid-grey under Gaussian noise of std ``noise``."""

    def __init__(self, classes: int = 12, per_class: int = 40, size: int = 16, noise: float = 90.0,
                 contrast: float = 0.3) -> None:
        self.classes, self.per_class, self.size, self.noise, self.contrast = classes, per_class, size, noise, contrast
        self.key = f"c{classes}-n{per_class}-s{size}-z{noise:g}-k{contrast:g}"

    def _write(self, root: Path, rng: np.random.Generator) -> None:
        for k in range(self.classes):
            for i in range(self.per_class):
                img = class_image(k, self.size, rng, noise=0.0).astype(np.float32)
                img = 128 + self.contrast * (img - 128) + rng.normal(0, self.noise, img.shape)
                save_image(np.clip(img, 0, 255).astype(np.uint8), root / f"class_{k:02d}" / f"{i:03d}.png")

    def data(self, root: Path) -> dict:
        return {"source": "imagefolder", "root": str(root), "image_size": self.size, "val_fraction": 0.4}


MASKS, GENDERS, AGES = ("wear", "incorrect", "not_worn"), ("male", "female"), ("young", "middle", "old")
MASK_PHOTOS = (5, 1, 1)  # each person: five photos with the mask worn, one worn incorrectly, one without


class MaskTask(_Built):
    """18 classes (mask x gender x age) over ``people`` people, the old age group rare (``old_share``); each
    image its class's pattern at ``contrast`` under a per-person tint and noise."""

    def __init__(self, people: int = 80, size: int = 16, noise: float = 60.0, contrast: float = 0.45,
                 old_share: float = 0.1) -> None:
        self.people, self.size, self.noise, self.contrast, self.old_share = people, size, noise, contrast, old_share
        self.key = f"mask18-p{people}-s{size}-z{noise:g}-k{contrast:g}-o{old_share:g}"

    @staticmethod
    def classes() -> list[str]:
        return [f"{m}/{g}/{a}" for m in MASKS for g in GENDERS for a in AGES]

    def _write(self, root: Path, rng: np.random.Generator) -> None:
        rows = []
        young = (1 - self.old_share) / 2
        for p in range(self.people):
            gender, age = rng.integers(2), rng.choice(3, p=[young, young, self.old_share])
            tint = rng.normal(0, 25, 3)  # a person's own colour cast: what a person-level split must generalize over
            for m, photos in enumerate(MASK_PHOTOS):
                for j in range(photos):
                    k = m * 6 + gender * 3 + age
                    img = class_image(k, self.size, rng, noise=0.0).astype(np.float32)
                    img = 128 + self.contrast * (img - 128) + tint + rng.normal(0, self.noise, img.shape)
                    name = f"p{p:03d}_{m}_{j}.png"
                    save_image(np.clip(img, 0, 255).astype(np.uint8), root / name)
                    rows.append((name, self.classes()[k], f"p{p:03d}"))
        with open(root / "labels.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([("path", "label", "person"), *rows])

    def data(self, root: Path) -> dict:
        return {"source": "csv", "file": str(root / "labels.csv"), "label_columns": ["label"],
                "group_column": "person", "classes": self.classes(), "image_size": self.size, "val_fraction": 0.25}


class MultiLabelTask(_Built):
    """``n`` images of a 2x2 grid; label j on paints patch j (tests/imagegen.py's label_image); one to three
    labels per image, under noise."""

    def __init__(self, n: int = 400, size: int = 16, noise: float = 70.0) -> None:
        self.n, self.size, self.noise = n, size, noise
        self.key = f"multilabel4-n{n}-s{size}-z{noise:g}"

    def _write(self, root: Path, rng: np.random.Generator) -> None:
        rows = []
        for i in range(self.n):
            on = [False] * 4
            for j in rng.choice(4, size=rng.integers(1, 4), replace=False):
                on[j] = True
            save_image(label_image(on, self.size, rng, noise=self.noise), root / f"{i:04d}.png")
            rows.append((f"{i:04d}.png", *map(int, on)))
        with open(root / "labels.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([("path", "a", "b", "c", "d"), *rows])

    def data(self, root: Path) -> dict:
        return {"source": "csv", "file": str(root / "labels.csv"), "label_columns": ["a", "b", "c", "d"],
                "image_size": self.size, "val_fraction": 0.3}

    def training(self) -> dict:
        return {"loss": {"name": "bce", "label_smoothing": 0.0}}


TASKS: dict[str, _Built] = {"noisy12": NoisyTask(), "mask18": MaskTask(), "multilabel": MultiLabelTask()}
