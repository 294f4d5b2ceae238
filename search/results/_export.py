"""``search best --export``: the winning trial as a self-contained training config."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml

from search.errors import SearchError
from search.ranking import best_or_none
from training.files import write_atomic
from training.runtime import recorded_kind

__all__ = ["best_trial", "export_best"]


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    best = best_or_none(study)
    if best is None:
        raise SearchError(f"study '{study.study_name}' has no completed trial yet; "
                          f"run `search run --study {study.study_name}` first")
    return best


def export_best(study: optuna.Study, path: Path) -> optuna.trial.FrozenTrial:
    t = best_trial(study)
    if path.is_dir():
        raise SearchError(f"--export {path} is a folder; give a file name such as {path / 'best.yaml'}")
    if not path.parent.is_dir():
        raise SearchError(f"--export {path}: folder '{path.parent}' does not exist; create it or pick another path")
    cfg = t.user_attrs.get("config")
    if not cfg:
        raise SearchError(f"trial {t.number} of '{study.study_name}' holds no config; it was not run by this tool")
    best_epoch = t.user_attrs.get("best_epoch")
    if best_epoch:  # `search train --full-data` trains this many epochs on every image
        cfg = {**cfg, "train": {**cfg["train"], "full_data_epochs": int(best_epoch)}}
    threads = t.user_attrs.get("num_threads")
    on_cpu = recorded_kind(t.user_attrs.get("device_kind"), t.user_attrs.get("device")) == "CPU"
    replay = f" --threads {threads}" if threads and on_cpu else ""
    header = (f"# study '{study.study_name}', trial {t.number}: macro_f1 {t.value:.6f} at epoch "
              f"{best_epoch}\n# retrain: search train --config {path.name}{replay}   (on all the data: --full-data)\n"
              + (f"# the trial ran on {threads} CPU thread(s); --threads {threads} replays it bit for bit on a CPU "
                 "(other thread counts differ in the last digits)\n" if replay else "")
              + f"# searched: {', '.join(f'{k}={v}' for k, v in t.params.items())}\n")
    write_atomic(path, header + yaml.safe_dump(cfg, sort_keys=False))
    return t
