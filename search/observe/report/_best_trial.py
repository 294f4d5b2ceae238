"""The best trial's results by class, for ``search report``: per-class F1 from the trial's user attributes, and
the confusion matrix, class names and per-epoch history from its run folder (training.run_folder reads it; a
cross-validated trial's folder holds one run per fold)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from optuna.trial import FrozenTrial

from training.run_folder import RunMetrics, read_runs, summed_confusion

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
    try:
        runs = read_runs(folder, require_all=True)
    except OSError as e:
        best.unread = f"cannot read {e.filename or folder}: {e.strerror or e}"
        return best
    except ValueError as e:
        best.unread = f"cannot read {e}"
        return best
    metrics = {r.label: r.metrics for r in runs}
    best.folds = len(runs) if runs[0].label else 0
    first = runs[0].metrics
    best.classes = first.get("classes")
    if best.per_class_f1 is None:  # recorded by every trial of ours; a single run's metrics have it too
        best.per_class_f1 = first.get("per_class_f1") if not best.folds else None
    best.histories = {label: m["history"] for label, m in metrics.items() if m.get("history")}
    best.confusion, best.no_confusion = _confusion(runs, best.classes)
    return best


def _confusion(runs: list[RunMetrics], classes: list[str] | None) -> tuple[list[list[int]] | None, str | None]:
    """One run's matrix at its best epoch; a cv trial's folds summed (the out-of-fold matrix)."""
    if any(r.metrics.get("multilabel") for r in runs):
        return None, "a multi-label run has one 2x2 matrix per label, not one over the classes"
    if not classes:
        return None, "the run folder's metrics name no classes"
    if any(r.metrics.get("classes") != classes for r in runs):
        return None, "the folds' metrics list different classes"
    matrix = summed_confusion(runs)
    if matrix is None:
        return None, "the run folder holds no confusion matrix (a run without validation)"
    return matrix, None
