"""Exactly N finished trials, however many workers share a study.

The budget is kept as WAITING trials in the store ("tokens"): a worker only runs a trial it claimed by moving
a WAITING trial to RUNNING. Failing stale trials, top-ups and claims all run under one study-wide lock (a file
lock beside SQLite, an advisory lock on Postgres), so concurrent workers never add a token once
complete + pruned + running + waiting = N, never claim the same token twice and never re-queue the same dead
trial twice. A trial whose worker died is failed by the
heartbeat check and re-enqueued with its parameters by Optuna's RetryFailedTrialCallback: that is a token too.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.trial import TrialState

__all__ = ["top_up", "take_waiting", "claim_waiting", "counts", "LIVE"]

LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def top_up(study: optuna.Study, n_trials: int, first_params: dict | None = None,
           trials: list[optuna.trial.FrozenTrial] | None = None) -> int:
    """Add a WAITING token when none waits and live trials < n_trials; the very first token of a study may carry
    fixed params (the defaults). One token at a time keeps the unfinished trials, which every claim and every
    sample reads again, as few as the running ones. ``trials``: the study's trials if just read. Call it under
    :func:`study_lock`."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    if any(t.state == TrialState.WAITING for t in trials) or sum(t.state in LIVE for t in trials) >= n_trials:
        return 0
    params = first_params if first_params and not trials else {}
    study.enqueue_trial(params, user_attrs={"defaults": True} if params else None)
    return 1


def take_waiting(study: optuna.Study) -> optuna.Trial | None:
    """Move one WAITING trial to RUNNING for this worker, or None when there is none left. Call it under
    :func:`study_lock`: on SQLite the storage's SELECT ... FOR UPDATE is no lock, and two workers could both
    move the same WAITING trial to RUNNING (seen: trial 0 trained twice by the two demo workers). ``ask()``
    takes the oldest WAITING trial when there is one; without one it would create a trial and overshoot the
    budget, so it is only called when one waits."""
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return None
    with warnings.catch_warnings():  # our lease beats the heart, as Study.optimize would (search/store/_heartbeat.py)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
        return study.ask()


def claim_waiting(study: optuna.Study, storage) -> tuple[optuna.Trial, int] | None:
    """:func:`take_waiting`, with the trial's heartbeat recorded before the claim: Optuna never counts a RUNNING trial
    without any heartbeat as stale, so a worker killed right after its claim must still leave one that goes
    stale. Returns the trial and its storage id."""
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if not waiting:
        return None
    study_id = storage.get_study_id_from_name(study.study_name)
    if storage.get_heartbeat_interval():
        storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, waiting[0].number))
    trial = take_waiting(study)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    if trial.number != waiting[0].number and storage.get_heartbeat_interval():
        storage.record_heartbeat(trial_id)  # not the oldest after all: still beat before anyone can look
    return trial, trial_id
