"""A trial's runs and their ``metrics.json``: the one reader behind the report, the artifacts and the W&B summary.

A trial's folder is one run, or with ``cv:`` one run per fold (``fold-i``). Across folds the confusion matrices
add up (the folds' val sets partition the data, so each image is counted once: the out-of-fold matrix), and the
per-class F1 is the folds' mean, as the trial records it (training/cv.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training.cv import combine

from .ensemble import models_of

__all__ = ["Run", "read_runs", "summed_confusion", "mean_per_class_f1"]


@dataclass(frozen=True)
class Run:
    folder: Path
    label: str        # "" for a trial's single run, "fold-i" for a fold
    metrics: dict     # its metrics.json


def read_runs(output_dir: str | Path | None, *, require_all: bool = False) -> list[Run]:
    """The trial's runs that wrote their metrics.json, in fold order ([] without a folder). ``require_all``: a run
    folder without one raises FileNotFoundError instead of being left out. A file that cannot be read or parsed
    raises (OSError, ValueError)."""
    if not output_dir or not Path(output_dir).is_dir():
        return []
    root = Path(output_dir)
    runs = []
    for folder in models_of(root):
        path = folder / "metrics.json"
        if not path.is_file() and not require_all:
            continue
        try:
            metrics = json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        runs.append(Run(folder, "" if folder == root else folder.name, metrics))
    return runs


def summed_confusion(runs: list[Run]) -> list | None:
    """The runs' confusion matrices added element-wise (C x C, or C x 2 x 2 for multi-label); None when a run
    holds none (a full-data run validated nothing)."""
    matrices = [r.metrics.get("confusion_matrix") for r in runs]
    if not matrices or any(m is None for m in matrices):
        return None
    total = matrices[0]
    for m in matrices[1:]:
        total = _add(total, m)
    return total


def mean_per_class_f1(runs: list[Run]) -> dict | None:
    if not runs:
        return None
    return runs[0].metrics.get("per_class_f1") if len(runs) == 1 else combine([r.metrics for r in runs])["per_class_f1"]


def _add(a, b):
    return [_add(x, y) for x, y in zip(a, b)] if isinstance(a, list) else a + b
