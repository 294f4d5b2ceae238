"""Exactly N finished trials, however many workers share a study.

The budget is kept as WAITING trials in the store ("tokens"): a worker only runs a trial it claimed by moving
a WAITING trial to RUNNING. Failing stale trials, top-ups and claims all run under one study-wide lock (a file
lock beside SQLite, an advisory lock on Postgres), so concurrent workers never add more than
N - (complete + pruned + running + waiting) tokens, never claim the same token twice and never re-queue the
same dead trial twice. A trial whose worker died is failed by the
heartbeat check and re-enqueued with its parameters by Optuna's RetryFailedTrialCallback: that is a token too.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import optuna
from optuna.trial import TrialState

from .locks import advisory_lock, file_lock

__all__ = ["budget_lock", "top_up", "claim", "counts", "LIVE"]

LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


@contextlib.contextmanager
def budget_lock(storage: optuna.storages.RDBStorage, url: str, study_name: str):
    if url.startswith("sqlite:///"):
        with file_lock(Path(url.removeprefix("sqlite:///")).expanduser().resolve().with_suffix(".lock")):
            yield
    elif url.startswith("postgresql"):
        key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
        with storage.engine.connect() as conn, advisory_lock(conn, key):
            yield
    else:
        yield  # other databases: Optuna's row locks still make claims unique; top-ups may overshoot


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def top_up(study: optuna.Study, n_trials: int, first_params: dict | None = None) -> int:
    """Enqueue tokens until live trials == n_trials; the very first may carry fixed params (the defaults).
    Call it under :func:`budget_lock`."""
    trials = study.get_trials(deepcopy=False)
    live = sum(t.state in LIVE for t in trials)
    need = max(n_trials - live, 0)
    for i in range(need):
        params = first_params if (first_params and not trials and i == 0) else {}
        study.enqueue_trial(params, user_attrs={"defaults": True} if params else None)
    return need


def claim(study: optuna.Study) -> optuna.Trial | None:
    """Move one WAITING trial to RUNNING for this worker, or None when there is none left. Call it under
    :func:`budget_lock`: on SQLite the storage's SELECT ... FOR UPDATE is no lock, and two workers could both
    move the same WAITING trial to RUNNING (seen: trial 0 trained twice by the two demo workers)."""
    # Study._pop_waiting_trial_id does exactly this claim (atomic via storage.set_trial_state_values);
    # Study.ask() would create a new trial when none is waiting, which overshoots the budget.
    study._thread_local.cached_all_trials = None  # what ask() does: samplers must see the latest trials
    trial_id = study._pop_waiting_trial_id()
    if trial_id is None:
        return None
    return optuna.Trial(study, trial_id)
