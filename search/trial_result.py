"""What a trial's run folder says about its best epoch, for what is shown after the trial: the classes, the
per-class F1 and the confusion matrix (search/trial_runs.py: with ``cv:``, every fold's)."""

from __future__ import annotations

from pathlib import Path

from .trial_runs import mean_per_class_f1, read_runs, summed_confusion

__all__ = ["trial_result"]


def trial_result(output_dir: str | Path | None) -> dict | None:
    """{'classes', 'multilabel', 'per_class_f1', 'confusion_matrix', 'best_epoch'}, or None before the first
    epoch wrote its metrics (a trial that failed early) and for a run that validated nothing."""
    runs = read_runs(output_dir)
    matrix = summed_confusion(runs)
    if matrix is None:
        return None
    first = runs[0].metrics
    return {"classes": first["classes"], "multilabel": first["multilabel"], "per_class_f1": mean_per_class_f1(runs),
            "confusion_matrix": matrix, "best_epoch": first["best_epoch"] if len(runs) == 1 else None}
