"""Run folders, as ``fit`` writes them: where a new one goes, and the one reader of what they hold.

A run folder holds config.yaml (the resolved config), split.json (the train/val file lists), metrics.json (the best
epoch's metrics and the per-epoch history), val_predictions.npz (the best epoch's class probabilities for each
val image, in split.json's val order), best.pt (the best epoch's weights) and last.pt (the checkpoint a retried
trial resumes from). ``--seeds`` and cross-validation write one run per seed or fold under a parent
(``seed-N``, ``fold-i``); a cv trial's folder is such a parent. A folder *holds a finished run* once some run in
it has written its metrics.json (after its first epoch). Default folders are new ones, and an explicit one that
holds a finished run is only replaced when asked (``output_folder``).

Across a trial's folds the confusion matrices add up (the folds' val sets partition the data, so each image is
counted once: the out-of-fold matrix), and the per-class F1 is the folds' mean, as the trial records it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError

__all__ = ["CONFIG_FILE", "SPLIT_FILE", "METRICS_FILE", "BEST_CHECKPOINT", "LAST_CHECKPOINT", "RUN_FILES",
           "finished_run_in", "new_run_folder", "output_folder", "clear_run", "RunMetrics", "model_folders",
           "read_metrics", "read_runs", "summed_confusion", "mean_per_class_f1", "best_epoch_result",
           "PREDICTIONS_FILE", "ValPredictions", "save_predictions", "read_predictions"]

CONFIG_FILE, SPLIT_FILE, METRICS_FILE = "config.yaml", "split.json", "metrics.json"
BEST_CHECKPOINT, LAST_CHECKPOINT, PREDICTIONS_FILE = "best.pt", "last.pt", "val_predictions.npz"
RUN_FILES = (CONFIG_FILE, SPLIT_FILE, METRICS_FILE, PREDICTIONS_FILE, BEST_CHECKPOINT, LAST_CHECKPOINT)
_PARTS = ("fold-*", "seed-*")  # the runs a parent folder holds (search cv, search train --seeds)


def finished_run_in(folder: Path) -> Path | None:
    """The metrics.json of a finished run in ``folder`` or in one of its fold/seed runs, else None."""
    if not folder.is_dir():
        return None
    if (folder / METRICS_FILE).is_file():
        return folder / METRICS_FILE
    for pattern in _PARTS:
        for part in sorted(folder.glob(pattern)):
            if (part / METRICS_FILE).is_file():
                return part / METRICS_FILE
    return None


def new_run_folder(root: Path, stem: str) -> Path:
    """``root/<stem>-<n>``, n one above the highest taken, made now (mkdir is the claim: two commands started
    together get different folders)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "run"
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := re.fullmatch(re.escape(stem) + r"-(\d+)", p.name))]
    n = max(taken, default=0) + 1
    while True:
        try:
            (root / f"{stem}-{n}").mkdir()
            return root / f"{stem}-{n}"
        except FileExistsError:
            n += 1


@contextlib.contextmanager
def output_folder(explicit: Path | None, default_root: Path, stem: str, overwrite: bool,
                  option: str = "--output", outputs: tuple[str, ...] = ()) -> Iterator[Path]:
    """The folder a command writes its run(s) to: ``explicit``, refused when it holds a finished run or one of
    the command's own ``outputs`` (glob patterns: an earlier audit's or explain's files) unless ``overwrite``,
    which clears them first, else a new folder under ``default_root``. A new folder (and the parents made for
    it) still empty when the block fails is removed: a mistake leaves nothing behind."""
    base = explicit if explicit is not None else default_root
    made = [p for p in (base, *base.parents) if not p.exists()]  # what a failure must take away again
    if explicit is None:
        folder = new_run_folder(default_root, stem)
        made.insert(0, folder)
    else:
        folder = explicit
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{option} {folder} is a file; give a folder for the run")
        found = finished_run_in(folder) or _first_output(folder, outputs)
        if found is not None and not overwrite:
            raise ConfigError(f"{option} {folder} already holds a finished run ({found}); give another {option}, "
                              "leave it out for a new folder, or add --overwrite to replace that run")
        if found is not None:
            clear_run(folder, outputs)
    try:
        yield folder
    except BaseException:
        for made_here in made:  # innermost first; a folder that holds anything stays, and so do its parents
            if not made_here.is_dir() or any(made_here.iterdir()):
                break
            made_here.rmdir()
        raise


def _first_output(folder: Path, outputs: tuple[str, ...]) -> Path | None:
    if not folder.is_dir():
        return None
    return next((p for pattern in outputs for p in sorted(folder.glob(pattern))), None)


def clear_run(folder: Path, outputs: tuple[str, ...] = ()) -> None:
    """Remove a run's own files and its fold/seed runs from ``folder``, and what matches ``outputs`` (nothing
    else a user keeps there)."""
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for pattern in (*_PARTS, *outputs):
        for part in folder.glob(pattern):
            if part.is_dir():
                shutil.rmtree(part)
            elif pattern in outputs:
                part.unlink()


# ---------------------------------------------------------------- reading what a run folder holds

@dataclass(frozen=True)
class RunMetrics:
    """One run of a folder and its metrics.json."""
    folder: Path
    label: str        # "" for a folder's single run, "fold-i" for a fold
    metrics: dict

    @property
    def best_checkpoint(self) -> Path | None:
        path = self.folder / BEST_CHECKPOINT
        return path if path.is_file() else None


def model_folders(folder: Path) -> list[Path]:
    """The runs a trial's folder trained, one model each: itself, or with cv its folds (``fold-i``)."""
    folds = sorted((p for p in folder.glob("fold-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))
    return folds if folds and not (folder / BEST_CHECKPOINT).is_file() else [folder]


def read_metrics(folder: Path) -> dict:
    """One run's metrics.json. Raises OSError when it cannot be read, ValueError when it is not JSON."""
    path = Path(folder) / METRICS_FILE
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_runs(output_dir: str | Path | None, *, require_all: bool = False) -> list[RunMetrics]:
    """The runs of a folder that wrote their metrics.json, in fold order ([] without a folder). ``require_all``:
    a run without one raises FileNotFoundError instead of being left out. A file that cannot be read or parsed
    raises (OSError, ValueError)."""
    if not output_dir or not Path(output_dir).is_dir():
        return []
    root = Path(output_dir)
    runs = []
    for folder in model_folders(root):
        if not (folder / METRICS_FILE).is_file() and not require_all:
            continue
        runs.append(RunMetrics(folder, "" if folder == root else folder.name, read_metrics(folder)))
    return runs


def summed_confusion(runs: list[RunMetrics]) -> list | None:
    """The runs' confusion matrices added element-wise (C x C, or C x 2 x 2 for multi-label); None when a run
    holds none (a full-data run validated nothing)."""
    matrices = [r.metrics.get("confusion_matrix") for r in runs]
    if not matrices or any(m is None for m in matrices):
        return None
    total = matrices[0]
    for m in matrices[1:]:
        total = _add(total, m)
    return total


def mean_per_class_f1(runs: list[RunMetrics]) -> dict | None:
    from .cv import combine

    if not runs:
        return None
    return runs[0].metrics.get("per_class_f1") if len(runs) == 1 else combine([r.metrics for r in runs])["per_class_f1"]


def best_epoch_result(output_dir: str | Path | None) -> dict | None:
    """What a finished trial's folder says about its best epoch: {'classes', 'multilabel', 'per_class_f1',
    'confusion_matrix', 'best_epoch'} (folds summed and averaged), or None before the first epoch wrote its
    metrics and for a run that validated nothing."""
    runs = read_runs(output_dir)
    matrix = summed_confusion(runs)
    if matrix is None:
        return None
    first = runs[0].metrics
    return {"classes": first["classes"], "multilabel": first["multilabel"], "per_class_f1": mean_per_class_f1(runs),
            "confusion_matrix": matrix, "best_epoch": first["best_epoch"] if len(runs) == 1 else None}


def _add(a, b):
    return [_add(x, y) for x, y in zip(a, b)] if isinstance(a, list) else a + b


# ---------------------------------------------------------------- the best epoch's val predictions

@dataclass(frozen=True)
class ValPredictions:
    """The best epoch's class probabilities for each val image of one run: ``names`` as split.json names them,
    ``targets`` the labels it trained with (a class index, or 0/1 per label for multi-label)."""
    names: list[str]
    probabilities: np.ndarray     # [N, C] float32
    targets: np.ndarray           # [N] int64, or [N, C] 0/1
    classes: list[str]
    multilabel: bool


def save_predictions(folder: Path, probabilities: np.ndarray, targets: np.ndarray) -> None:
    """Atomically (a reader sees the previous best epoch's, or this one's): ``np.savez`` to a temporary file
    beside it, then a rename."""
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz", delete=False) as fh:
        np.savez(fh, probabilities=probabilities.astype(np.float32), targets=targets)
    Path(fh.name).replace(folder / PREDICTIONS_FILE)


def read_predictions(folder: str | Path) -> ValPredictions | None:
    """A run's val predictions with the names of its val images; None for a run without them (no epoch yet, a
    full-data run, a run from before they were kept)."""
    folder = Path(folder)
    if not (folder / PREDICTIONS_FILE).is_file():
        return None
    with np.load(folder / PREDICTIONS_FILE) as saved:
        probabilities, targets = saved["probabilities"], saved["targets"]
    names = json.loads((folder / SPLIT_FILE).read_text())["val"]
    metrics = read_metrics(folder)
    if len(names) != len(probabilities):
        raise ValueError(f"{folder / PREDICTIONS_FILE}: {len(probabilities)} predictions for {len(names)} val images "
                         f"in {SPLIT_FILE}; the folder mixes two runs: retrain it")
    return ValPredictions(names, probabilities, targets, list(metrics["classes"]), bool(metrics["multilabel"]))
