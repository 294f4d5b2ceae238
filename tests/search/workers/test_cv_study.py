"""A study with ``cv: {folds: K}``: each trial's value is the mean of its folds, fold scores go to the pruner
(steps 1..K), and a trial whose folds are clearly worse is pruned. Also: an export carries the best epoch for a
full-data retrain. On SQLite: the pruners read the store through the same Optuna API on every backend."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from optuna.trial import TrialState

from clitools import study_trials
from search import load_study
from search.errors import StudyConfigError
from search.results import export_best
from search.store import open_storage
from search.workers import open_study, work
from studygen import write_study


def _cv_study(tmp_path, pruner: dict, folds: int = 5):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    path = write_study(tmp_path, "cv", epochs=2, n_trials=3, limit=200,
                       space={"optimizer.lr": {"low": 1.0e-7, "high": 3.0e-2, "log": True}}, pruner=pruner)
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "cv": {"folds": folds}}))
    sc = load_study(str(path))
    st = open_study(sc, open_storage(url), url)
    for lr in (0.02, 0.01, 1.0e-7):  # two trials that learn, then one that cannot
        st.enqueue_trial({"optimizer.lr": lr})
    work(sc, url, n_trials=3, output_root=tmp_path / "runs", use_wandb=False, worker_index=0)
    return url, study_trials(url, "cv")


@pytest.mark.slow  # end to end, with processes or several trials: not in `make test-fast`
def test_a_cv_study_scores_trials_by_their_folds_and_wilcoxon_prunes_a_weak_one(tmp_path):
    url, trials = _cv_study(tmp_path, {"name": "wilcoxon", "n_warmup_steps": 1})
    good, weak = trials[:2], trials[2]
    for t in good:
        assert t.state == TrialState.COMPLETE and sorted(t.intermediate_values) == [1, 2, 3, 4, 5]
        assert t.value == pytest.approx(np.mean(t.user_attrs["fold_macro_f1"]))
        assert list(t.intermediate_values.values()) == t.user_attrs["fold_macro_f1"]
    # with 5 folds, a one-sided Wilcoxon test reaches p < 0.1 once 4 folds are all worse (p = 1/16)
    assert weak.state == TrialState.PRUNED and max(weak.intermediate_values) == 4
    out = tmp_path / "runs" / "cv"
    assert sorted(p.name for p in (out / "trial-0000").iterdir()) == [f"fold-{i}" for i in range(5)]
    # the export carries the folds' median best epoch, for `search train --full-data`
    import optuna

    export_best(optuna.load_study(study_name="cv", storage=open_storage(url)), tmp_path / "best.yaml")
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    best = max(good, key=lambda t: t.value)
    assert exported["train"]["full_data_epochs"] == best.user_attrs["best_epoch"] >= 1
    assert "folds" not in exported["data"] or exported["data"]["folds"] is None  # retrains on the usual split
    # an ensemble of the best cv trial votes its five fold models
    import imagegen
    from search.results import ensemble

    rng = np.random.default_rng(0)
    for i in range(3):
        imagegen.save_image(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), tmp_path / "test" / f"{i}.png")
    picked, pred = ensemble(optuna.load_study(study_name="cv", storage=open_storage(url)), 1, tmp_path / "test",
                            tmp_path / "out.csv")
    assert picked == [best.number] and len(pred.per_run) == 5 and len(pred.decision) == 3
    assert (tmp_path / "out.csv").read_text().count("\n") == 4  # a header and one row per image


@pytest.mark.slow  # end to end, with processes or several trials: not in `make test-fast`
def test_with_cv_the_median_pruner_compares_folds(tmp_path):
    _, trials = _cv_study(tmp_path, {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1}, folds=3)
    weak = trials[2]
    assert weak.state == TrialState.PRUNED and max(weak.intermediate_values) == 2  # fold 1 is warm-up


def test_wilcoxon_without_cv_is_refused(tmp_path):
    path = write_study(tmp_path, "nocv", pruner={"name": "wilcoxon"})
    with pytest.raises(StudyConfigError) as ei:
        load_study(str(path))
    assert "pruner.name = 'wilcoxon'" in str(ei.value) and "cv: {folds: 5}" in str(ei.value)
