"""k-fold cross-validation of one config: each fold is a normal run (its own folder, split.json, metrics)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError
from .run_folder import LAST_CHECKPOINT

if TYPE_CHECKING:  # fit (and torch) load only when folds are trained: reading results needs combine() alone
    from .config import RunConfig
    from .loop import Callback

__all__ = ["fold_config", "cross_validate", "combine", "summarize"]

FoldCallback = Callable[[int, dict], None]


def fold_config(cfg: RunConfig, folds: int, fold: int) -> RunConfig:
    """``cfg`` validated on fold ``fold`` of ``folds`` (same split seed: the folds of one CV are one partition)."""
    if folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds (5 is usual)")
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"folds": folds, "fold": fold})})


def cross_validate(cfg: RunConfig, output_dir: str | Path, folds: int, *, epoch_callback: Callback | None = None,
                   fold_callback: FoldCallback | None = None, resume_dir: str | Path | None = None,
                   **fit_kwargs) -> list[dict]:
    """Run fold 0..folds-1 under ``output_dir/fold-i`` and return their results. ``fold_callback(i, result)``
    runs after each fold and may raise to stop (a search prunes a trial whose first folds are clearly worse).
    ``resume_dir``: an interrupted CV's folder; each fold resumes from its last.pt there (a finished fold
    returns at once)."""
    from .loop import fit

    out, results = Path(output_dir), []
    fold_config(cfg, folds, 0)  # --folds 1 fails before anything runs
    for i in range(folds):
        ck = Path(resume_dir) / f"fold-{i}" / LAST_CHECKPOINT if resume_dir else None
        results.append(fit(fold_config(cfg, folds, i), out / f"fold-{i}", epoch_callback,
                           resume_from=ck if ck and ck.is_file() else None, **fit_kwargs))
        if fold_callback is not None:
            fold_callback(i, results[-1])
    return results


def combine(results: list[dict]) -> dict:
    """One result for a CV: the mean macro-F1, accuracy and per-class F1 over the folds (a class absent from a
    fold's val counts only where present), the median best epoch (the epoch count of a full-data retrain)."""
    per_class = {}
    for name in results[0]["per_class_f1"]:
        values = [r["per_class_f1"][name] for r in results if r["per_class_f1"][name] is not None]
        per_class[name] = round(statistics.fmean(values), 6) if values else None
    return {**results[-1], "macro_f1": statistics.fmean(r["macro_f1"] for r in results),
            "accuracy": statistics.fmean(r["accuracy"] for r in results), "per_class_f1": per_class,
            "best_epoch": round(statistics.median(r["best_epoch"] for r in results)),
            "epochs_run": max(r["epochs_run"] for r in results),
            "resumed_at_epoch": max(r["resumed_at_epoch"] for r in results),
            "fold_macro_f1": [r["macro_f1"] for r in results], "confusion_matrix": None, "history": None}


def summarize(results: list[dict]) -> dict:
    """Per-run macro-F1 and their mean and (sample) standard deviation, as `search cv` and `--seeds` print them;
    a full-data run has no macro-F1 (None), and is left out of the mean."""
    scores = [r["macro_f1"] for r in results]
    known = [v for v in scores if v is not None]
    return {"scores": scores, "mean": statistics.fmean(known) if known else None,
            "std": statistics.stdev(known) if len(known) > 1 else 0.0 if known else None,
            "best_epochs": [r["best_epoch"] for r in results], "output_dirs": [r["output_dir"] for r in results]}
