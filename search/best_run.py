"""The best trial's results by class, for ``search report``: per-class F1 from the trial's user attributes, and
the confusion matrix, class names and per-epoch history from the metrics.json its run folder holds (a
cross-validated trial's folder holds one run per fold, ``fold-i/metrics.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from optuna.trial import FrozenTrial

from .ensemble import models_of

__all__ = ["BestRun", "read_best_run"]


@dataclass
class BestRun:
    trial: FrozenTrial
    per_class_f1: dict[str, float | None] | None = None
    classes: list[str] | None = None
    confusion: list[list[int]] | None = None       # None: see ``no_confusion``
    histories: dict[str, list[dict]] = field(default_factory=dict)  # run label ("" or "fold-i") -> epochs
    folds: int = 0                                  # 0: a single run
    unread: str | None = None                       # why the run folder could not be read
    no_confusion: str | None = None                 # why there is no confusion matrix


def read_best_run(trial: FrozenTrial) -> BestRun:
    best = BestRun(trial, per_class_f1=trial.user_attrs.get("per_class_f1"))
    folder = trial.user_attrs.get("output_dir")
    if not folder:
        best.unread = f"trial {trial.number} records no output_dir (it was not run by this tool)"
        return best
    if not Path(folder).is_dir():
        best.unread = (f"trial {trial.number}'s run folder {folder} is not on this machine (it ran elsewhere, "
                       "or the folder moved): run the report where the runs are")
        return best
    runs = models_of(Path(folder))
    metrics = {}
    for run in runs:
        path = run / "metrics.json"
        try:
            metrics[run.name if len(runs) > 1 else ""] = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            best.unread = f"cannot read {path}: {getattr(e, 'strerror', None) or e}"
            return best
    best.folds = len(runs) if len(runs) > 1 else 0
    first = next(iter(metrics.values()))
    best.classes = first.get("classes")
    if best.per_class_f1 is None:  # recorded by every trial of ours; a single run's metrics.json has it too
        best.per_class_f1 = first.get("per_class_f1") if not best.folds else None
    best.histories = {label: m["history"] for label, m in metrics.items() if m.get("history")}
    best.confusion, best.no_confusion = _confusion(metrics, best.classes)
    return best


def _confusion(metrics: dict[str, dict], classes: list[str] | None) -> tuple[list[list[int]] | None, str | None]:
    """One run's matrix at its best epoch; a cv trial's folds summed: each image is in exactly one fold's
    validation set, so the sum is the out-of-fold matrix over every image."""
    if any(m.get("multilabel") for m in metrics.values()):
        return None, "a multi-label run has one 2x2 matrix per label, not one over the classes"
    if not classes:
        return None, "metrics.json names no classes"
    if any(m.get("classes") != classes for m in metrics.values()):
        return None, "the folds' metrics.json list different classes"
    matrices = [m.get("confusion_matrix") for m in metrics.values()]
    if any(cm is None for cm in matrices):
        return None, "metrics.json holds no confusion matrix (a run without validation)"
    n = len(classes)
    return [[sum(cm[i][j] for cm in matrices) for j in range(n)] for i in range(n)], None
