"""`search train` and `search cv` outside a study: read the config, print progress and the runs' summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from training.config import RunConfig, load_config, read_yaml
from training.cv import summarize
from training.errors import ConfigError

from .study_config import is_study_file, load_study

__all__ = ["read_run_config", "EpochLines", "progress_printer", "parse_seeds", "print_runs"]


def read_run_config(path: Path) -> RunConfig:
    """A training config, or a study file whose searched parameters all take their defaults."""
    if is_study_file(read_yaml(path)):
        study = load_study(str(path))
        return study.config_for(study.default_params(), str(path))
    return load_config(path)


class EpochLines:
    """One line per epoch of ``epochs``; on stderr when stdout is kept for the JSON result. With ``folds`` (search
    cv) each line names its fold, as the folds' folders and summary lines do (fold 0 .. k-1)."""

    def __init__(self, epochs: int, as_json: bool, folds: int | None = None) -> None:
        self.epochs, self.folds, self.fold = epochs, folds, 0
        self.out = sys.stderr if as_json else sys.stdout

    def __call__(self, epoch: int, m: dict) -> None:
        where = f"epoch {epoch}/{self.epochs}" + (f" of fold {self.fold} ({self.folds} folds)" if self.folds else "")
        if m["macro_f1"] is None:  # full-data retrain: nothing validated
            line = f"{where} train_loss={m['train_loss']:.4f} (no validation)"
        else:
            line = (f"{where} macro_f1={m['macro_f1']:.4f} acc={m['accuracy']:.4f} "
                    f"train_loss={m['train_loss']:.4f} val_loss={m['val_loss']:.4f}")
        print(line, file=self.out, flush=True)

    def fold_done(self, fold: int, result: dict) -> None:
        self.fold = fold + 1


def progress_printer(epochs: int, as_json: bool, folds: int | None = None) -> EpochLines:
    return EpochLines(epochs, as_json, folds)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r}: give distinct non-negative integers separated by commas, e.g. 0,1,2")
    return seeds


def print_runs(runs: dict[int, dict], label: str, as_json: bool) -> None:
    """Each run's macro-F1, then the mean +- std; ``--json``: the last line is one object."""
    s = summarize(list(runs.values()))
    for key, r in runs.items():
        score = "no validation (full data)" if r["macro_f1"] is None else \
            f"macro_f1 {r['macro_f1']:.4f} (epoch {r['best_epoch']}/{r['epochs_run']})"
        print(f"{label} {key}: {score}; outputs in {r['output_dir']}", file=sys.stderr if as_json else sys.stdout)
    if as_json:  # cv: "folds" holds the fold scores (with mean and std); seeds: "seeds" the seeds themselves
        ids = {"folds": s["scores"]} if label == "fold" else {"seeds": list(runs)}
        print(json.dumps({**ids, "macro_f1": s["scores"], "mean": s["mean"], "std": s["std"],
                          "output_dirs": s["output_dirs"]}))
    elif s["mean"] is not None:
        print(f"macro_f1 mean {s['mean']:.4f} +- {s['std']:.4f} over {len(runs)} {label}s")
