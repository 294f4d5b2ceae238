"""Validation metrics: macro-F1 (the objective), accuracy, per-class F1, confusion matrix."""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.metrics import confusion_matrix, f1_score

__all__ = ["classification_metrics"]


def classification_metrics(scores: np.ndarray, targets: np.ndarray, classes: list[str], multilabel: bool,
                           threshold: float = 0.5) -> dict:
    """``scores``: logits [N, C]. Multi-label: sigmoid > threshold per label, macro-F1 over labels,
    accuracy = exact match of the whole label set. Macro-F1 averages the classes present in val or in the
    predictions; an absent, never-predicted class has per-class F1 None."""
    if multilabel:
        pred = (expit(scores) > threshold).astype(np.int64)  # expit: no overflow warning for confident logits
        true = targets.astype(np.int64)
        per = f1_score(true, pred, average=None, zero_division=0, labels=range(len(classes)))
        acc = float((pred == true).all(axis=1).mean())
        cm = [confusion_matrix(true[:, j], pred[:, j], labels=[0, 1]).tolist() for j in range(len(classes))]
    else:
        pred = scores.argmax(axis=1)
        per = f1_score(targets, pred, average=None, zero_division=0, labels=range(len(classes)))
        acc = float((pred == targets).mean())
        cm = confusion_matrix(targets, pred, labels=range(len(classes))).tolist()
    # a class with no sample in val and never predicted has no F1: left out of the mean (as scikit-learn's
    # macro average does without `labels`) and reported as None, rather than counted as 0
    present = (true.any(axis=0) | pred.any(axis=0)) if multilabel else \
        np.isin(np.arange(len(classes)), np.concatenate([targets, pred]))
    return {
        "macro_f1": float(np.mean(per[present])) if present.any() else 0.0,
        "accuracy": acc,
        "per_class_f1": {c: round(float(v), 6) if ok else None for c, v, ok in zip(classes, per, present)},
        "confusion_matrix": cm,
    }
