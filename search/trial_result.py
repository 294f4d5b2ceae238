"""What a trial's run folder says about its best epoch, for what is shown after the trial: the classes, the
per-class F1 and the confusion matrix, read from ``metrics.json`` (with ``cv:``, from every fold's)."""

from __future__ import annotations

import json
from pathlib import Path

from training.cv import combine

from .ensemble import models_of

__all__ = ["trial_result"]


def trial_result(output_dir: str | Path | None) -> dict | None:
    """{'classes', 'multilabel', 'per_class_f1', 'confusion_matrix', 'best_epoch'}, or None before the first
    epoch wrote its metrics (a trial that failed early). A cross-validated trial's folds each hold a run:
    per-class F1 is their mean (as the trial records it) and the confusion matrix their sum, since the folds'
    val sets partition the data and each image is counted once."""
    if not output_dir:
        return None
    files = [run / "metrics.json" for run in models_of(Path(output_dir))]
    runs = [json.loads(f.read_text()) for f in files if f.is_file()]
    if not runs or runs[0].get("confusion_matrix") is None:  # none yet, or a full-data run (nothing validated)
        return None
    matrix = runs[0]["confusion_matrix"]
    for r in runs[1:]:
        matrix = _add(matrix, r["confusion_matrix"])
    per_class = runs[0]["per_class_f1"] if len(runs) == 1 else combine(runs)["per_class_f1"]
    return {"classes": runs[0]["classes"], "multilabel": runs[0]["multilabel"], "per_class_f1": per_class,
            "confusion_matrix": matrix, "best_epoch": runs[0]["best_epoch"] if len(runs) == 1 else None}


def _add(a, b):
    """Element-wise sum of two nested lists of counts (C x C, or C x 2 x 2 for multi-label)."""
    return [_add(x, y) for x, y in zip(a, b)] if isinstance(a, list) else a + b
