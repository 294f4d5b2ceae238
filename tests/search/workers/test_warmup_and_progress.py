"""The pruner's warm-up means what the study key says (epochs 1..n are never pruned), a trial's last epoch is
never pruned, and progress lines show the study's current best. On SQLite: the pruner and the progress lines
read the store through the same Optuna API on every backend."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from clitools import study_trials
from search import load_study
from search.store import open_storage
from search.study import optuna_warmup_steps
from search.workers import open_study, work
from studygen import write_study

GOOD, WEAK = (0.01, 0.02), 1.0e-7  # two trials that learn, then one that cannot


def _run(tmp_path, name: str, epochs: int, warmup: int) -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    path = write_study(tmp_path, name, epochs=epochs, n_trials=3,
                       space={"optimizer.lr": {"low": 1.0e-7, "high": 3.0e-2, "log": True}},
                       pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": warmup})
    sc = load_study(str(path))
    st = open_study(sc, open_storage(url), url)
    for lr in (*GOOD, WEAK):
        st.enqueue_trial({"optimizer.lr": lr})
    work(sc, url, n_trials=3, output_root=tmp_path / "runs", use_wandb=False, worker_index=0)
    return study_trials(url, name)


def test_warmup_epochs_are_never_pruned_and_the_pruner_fires_after(tmp_path):
    trials = _run(tmp_path, "warm", epochs=6, warmup=3)
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE] * 2
    weak = trials[2]
    assert weak.state == TrialState.PRUNED, "the pruner must fire once the warm-up is over"
    assert max(weak.intermediate_values) == 4, "epochs 1-3 are warm-up; epoch 4 is the first that may prune"


def test_a_trial_that_reaches_its_last_epoch_completes(tmp_path):
    """Epochs 1-3 are warm-up and epoch 4 is the last: the weak trial runs to the end and is COMPLETE."""
    trials = _run(tmp_path, "last", epochs=4, warmup=3)
    weak = trials[2]
    assert weak.state == TrialState.COMPLETE and sorted(weak.intermediate_values) == [1, 2, 3, 4]
    assert weak.value < min(t.value for t in trials[:2])  # it was the weakest: a pruner would have fired


@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_optuna_prunes_first_at_the_epoch_after_the_warmup(warmup):
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=optuna_warmup_steps(warmup))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    good = study.ask()
    for epoch in range(1, 8):
        good.report(0.9, epoch)
    study.tell(good, 0.9)
    weak = study.ask()
    pruned_at = None
    for epoch in range(1, 8):
        weak.report(0.1, epoch)
        if weak.should_prune():
            pruned_at = epoch
            break
    assert pruned_at == warmup + 1


def test_progress_lines_show_the_studys_current_best(tmp_path, capsys, monkeypatch):
    """Another worker completes a trial of 0.97 while ours trains: our next epoch line must show it."""
    import search.workers._trial as objective

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    path = write_study(tmp_path, "best", epochs=4, n_trials=2)
    sc = load_study(str(path))
    real_fit = objective.fit

    def fit_beside_a_rival(cfg, out, callback, **kw):
        def cb(epoch, m):
            if epoch == 2:
                rival = optuna.load_study(study_name="best", storage=url)
                rival.add_trial(optuna.trial.create_trial(value=0.97, params={}, distributions={}))
            callback(epoch, m)
        return real_fit(cfg, out, cb, **kw)

    monkeypatch.setattr(objective, "fit", fit_beside_a_rival)
    work(sc, url, n_trials=2, output_root=tmp_path / "runs", use_wandb=False, worker_index=0)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " epoch " in ln]
    assert "(study best -)" in lines[0]
    assert all("(study best 0.9700)" in ln for ln in lines[1:4]), lines
