"""Study-level stopping: `stop: {patience_trials: N, min_delta: D}` ends the study on every worker once the best
macro-F1 has not improved by D over the last N finished trials, and `search status` says why."""

from __future__ import annotations

import datetime as dt
import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState, create_trial

from clitools import cli_env, study_trials
from incli import run_main
from search.study import StopConfig, forget_other_verdict, judge, stop_reason
from studygen import write_study

T0 = dt.datetime(2026, 1, 1)


def _trials(values: list[float | None]) -> list[optuna.trial.FrozenTrial]:
    """Finished trials in this order (None: pruned)."""
    out = []
    for i, v in enumerate(values):
        t = create_trial(value=v, state=TrialState.COMPLETE if v is not None else TrialState.PRUNED)
        t.number, t.datetime_complete = i, T0 + dt.timedelta(minutes=i)
        out.append(t)
    return out


def test_the_rule_looks_at_the_last_n_finished_trials():
    stop = StopConfig(patience_trials=3, min_delta=0.01)
    assert stop_reason(_trials([0.5, 0.6, 0.6]), stop) is None  # not more than N finished yet
    assert stop_reason(_trials([0.5, 0.55, 0.6, 0.605, None]), stop) is None  # 0.55 -> 0.605 in the window
    why = stop_reason(_trials([0.5, 0.55, 0.6, 0.605, None, 0.55]), stop)  # 0.605 - 0.6 < 0.01: no improvement
    assert why and "best macro_f1 0.6000 (before the last 3 finished trials; 0.6050 with them) has not improved " \
        "by 0.01" in why
    assert stop_reason(_trials([0.5, 0.6, 0.61, 0.2, 0.2]), stop) is None  # +0.01 counts
    assert stop_reason(_trials([0.5, 0.56, 0.57, 0.2, 0.2]), stop) is None  # so does 0.57 - 0.56 = 0.00999...
    assert stop_reason(_trials([None, None, None, None, 0.3]), stop) is None  # no best before the window
    assert stop_reason(_trials([0.5, 0.5, 0.5, 0.5]), StopConfig(patience_trials=3)) is not None  # D = 0: equal


def test_the_order_is_the_order_trials_finished_not_their_numbers():
    trials = _trials([0.9, 0.5, 0.5, 0.5])
    trials[0].datetime_complete = T0 + dt.timedelta(hours=1)  # trial 0 (the best) finished last
    assert stop_reason(trials, StopConfig(patience_trials=3)) is None


def test_a_verdict_holds_for_its_settings_and_other_settings_judge_afresh():
    study = optuna.create_study(direction="maximize")
    for t in _trials([0.5, 0.5, 0.5]):
        study.add_trial(t)
    stop = StopConfig(patience_trials=2)
    reason = judge(study, study.get_trials(), stop)
    assert reason and study.user_attrs["stopped"]["reason"] == reason
    study.add_trial(create_trial(value=0.9))  # a trial still running elsewhere finishes better afterwards
    assert judge(study, study.get_trials(), stop) == reason, "every worker sees the same stop"
    assert judge(study, study.get_trials(), StopConfig(patience_trials=5)) is None
    assert study.user_attrs["stopped"] is None
    assert judge(study, study.get_trials(), stop) is None  # judged afresh: trial 3's 0.9 is in the window
    for _ in range(2):
        study.add_trial(create_trial(value=0.5))  # finished after the 0.9
    assert judge(study, study.get_trials(), stop)
    forget_other_verdict(study, stop)
    assert study.user_attrs["stopped"]["reason"], "the same settings keep their verdict"
    forget_other_verdict(study, None)  # `stop:` removed from the file
    assert study.user_attrs["stopped"] is None and judge(study, study.get_trials(), None) is None


@pytest.mark.slow  # end to end, with processes or several trials: not in `make test-fast`
def test_two_workers_stop_the_study_and_status_says_why(tmp_path, capfd, monkeypatch):
    """A space of one point: every trial scores the same, so the study stops after patience + 1 trials (plus
    the one the other worker may have running) instead of its 10. The commands run in this process; the two
    workers are processes of their own, as `search run --workers 2` starts them."""
    path = write_study(tmp_path, "flat", epochs=1, n_trials=10, limit=120,
                       space={"model.dropout": {"choices": [0.0]}})
    d = yaml.safe_load(path.read_text())
    d["stop"] = {"patience_trials": 2, "min_delta": 0.05}
    path.write_text(yaml.safe_dump(d))
    url = f"sqlite:///{tmp_path / 'studies.db'}"

    def search_here(*args: str):
        return run_main(list(args), cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch, env=cli_env())

    r = search_here("run", "--study", str(path), "--storage", url, "--workers", "2", "--no-wandb", "--plain")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stopped early: the best macro_f1" in r.stdout
    finished = [t for t in study_trials(url, "flat") if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 3 <= len(finished) <= 4, [t.state for t in study_trials(url, "flat")]
    assert not any(t.state == TrialState.RUNNING for t in study_trials(url, "flat"))
    s = search_here("status", "--study", str(path), "--storage", url, "--json")
    status = json.loads(s.stdout)
    assert "(before the last 2 finished trials;" in status["stopped"]
    assert "has not improved by 0.05 (stop.patience_trials = 2" in status["stopped"]
    text = search_here("status", "--study", str(path), "--storage", url).stdout
    assert "stopped early" in text.splitlines()[1]
    again = search_here("run", "--study", str(path), "--storage", url, "--no-wandb", "--plain")
    assert again.returncode == 0 and "stopped early" in again.stdout  # a rerun with the same settings stays stopped
    assert len([t for t in study_trials(url, "flat") if t.state == TrialState.COMPLETE]) == len(finished)
