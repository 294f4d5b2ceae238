"""``search best --export``: the winning trial as a self-contained training config."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from .errors import SearchError

__all__ = ["best_trial", "export_best"]


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        raise SearchError(f"study '{study.study_name}' has no completed trial yet; "
                          f"run `search run --study {study.study_name}` first")
    return max(done, key=lambda t: t.value)


def export_best(study: optuna.Study, path: Path) -> optuna.trial.FrozenTrial:
    t = best_trial(study)
    if not path.parent.is_dir():
        raise SearchError(f"--export {path}: folder '{path.parent}' does not exist; create it or pick another path")
    cfg = t.user_attrs.get("config")
    if not cfg:
        raise SearchError(f"trial {t.number} of '{study.study_name}' holds no config; it was not run by this tool")
    header = (f"# study '{study.study_name}', trial {t.number}: macro_f1 {t.value:.6f} at epoch "
              f"{t.user_attrs.get('best_epoch')}\n# retrain: search train --config {path.name}\n"
              f"# searched: {', '.join(f'{k}={v}' for k, v in t.params.items())}\n")
    path.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    return t
