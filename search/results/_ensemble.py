"""``search ensemble``: the best checkpoints of a study's top-k completed trials, voted on a set of images."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.errors import SearchError
from search.ranking import ranked
from training.run_folder import model_folders

__all__ = ["top_run_folders", "ensemble"]


def top_run_folders(study: optuna.Study, k: int) -> list[tuple[int, Path]]:
    """(trial number, run folder) of the ``k`` best completed trials, best first (equal values: the earlier
    trial first)."""
    name = study.study_name
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if k < 1:
        raise SearchError(f"--top-k {k}: give at least 1 trial to ensemble")
    if k > len(done):
        fix = f"use --top-k {len(done)} or less" if done else f"run `search run --study {name}` first"
        raise SearchError(f"--top-k {k} but study '{name}' has {len(done)} completed trial(s); {fix}")
    top = ranked(done)[:k]
    out = []
    for t in top:
        folder = t.user_attrs.get("output_dir")
        if not folder:
            raise SearchError(f"trial {t.number} of '{name}' records no output_dir; it was not run by this tool: "
                              "pass its run folder to `search predict --run` instead")
        if not Path(folder).is_dir():
            raise SearchError(f"trial {t.number} of '{name}' trained in {folder}, which is not on this machine (moved "
                              "or deleted): run the command where the runs are, restore the folder, or lower --top-k")
        out.append((t.number, Path(folder)))
    return out


def ensemble(study: optuna.Study, k: int, images: Path, out: Path, *, how: str = "soft", tta: str | None = None):
    """Predict ``images`` with the top-k trials' best.pt (a cross-validated trial's: every fold's) and vote;
    returns (trial numbers, the Prediction)."""
    from training.inference import predict

    picked = top_run_folders(study, k)
    runs = [run for _, folder in picked for run in model_folders(folder)]
    return [n for n, _ in picked], predict(runs, images, out, tta=tta, how=how)
