"""The trial's lease (search/store/_lease.py): every outcome maps to one state, the W&B run is finished and memory freed
exactly once, and a store blip at the start of a trial is waited out as one at its end is. On SQLite: the lease
runs the same Optuna calls on every backend (test_workers and test_reliability cover Postgres end to end)."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from search.store import EndHook, Hooks, claim, open_storage


class _Mirror(EndHook):
    """Stands in for the W&B run: records how the lease finishes it (as TrialMirror: only an end the store knows)."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, dict]] = []

    def after_tell(self, lease) -> None:
        if lease.outcome.ended is not None:
            self.finished.append((lease.outcome.state.name, lease.outcome.summary))


class _Cleanup(EndHook):
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def after_tell(self, lease) -> None:
        self.calls.append(1)


@pytest.fixture
def study(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_seconds=5)
    return optuna.create_study(study_name="lease", storage=storage, direction="maximize"), storage


def _lease(study, storage, cleanups: list, lines: list):
    hooks = Hooks(say=lines.append, end=(_Cleanup(cleanups),))
    survey, lease = claim(study, storage, budget=5, max_failures=5, hooks=hooks)
    assert lease is not None and survey.done == 0
    return lease


@pytest.mark.parametrize("outcome", ["complete", "pruned", "crash", "no value"])
def test_each_outcome_is_one_state_with_one_finish_and_one_cleanup(study, outcome):
    st, storage = study
    cleanups, lines, mirror = [], [], _Mirror()
    lease = _lease(st, storage, cleanups, lines)
    with lease:
        lease.on_end(mirror)
        lease.report(0.5, 1)
        if outcome == "complete":
            lease.complete(0.75, {"macro_f1": 0.75})
        elif outcome == "pruned":
            raise optuna.TrialPruned("pruned at epoch 1")
        elif outcome == "crash":
            raise ValueError("a bad trial\nwith a second line")
    frozen = storage.get_trial(lease.trial_id)
    want = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(outcome, TrialState.FAIL)
    assert frozen.state == want == lease.outcome.state
    assert cleanups == [1] and len(mirror.finished) == 1 and mirror.finished[0][0] == want.name
    assert len(lines) == 1 and lines[0].startswith(f"trial {lease.number} {want.name}")
    if outcome == "complete":
        assert frozen.value == 0.75
    if outcome == "crash":
        assert frozen.user_attrs["fail_reason"] == "ValueError: a bad trial (with a second line)"
    if outcome == "no value":
        assert frozen.user_attrs["fail_reason"] == "the trial ended without a value"


def test_a_stop_signal_requeues_the_trial_and_propagates(study):
    from search.store import WorkerStopped

    st, storage = study
    cleanups, mirror = [], _Mirror()
    lease = _lease(st, storage, cleanups, [])
    with pytest.raises(WorkerStopped):
        with lease:
            lease.on_end(mirror)
            lease.trial.suggest_float("x", 0, 1)
            raise WorkerStopped("SIGTERM")
    trials = st.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    from search.store import RetryCallback

    assert trials[1].params == trials[0].params and RetryCallback.retry_history(trials[1]) == [0]
    assert cleanups == [1] and mirror.finished == [("FAIL", {"reason": "worker stopped"})]
    # a re-queued trial is not a failure the budget counts
    survey, _ = claim(st, storage, budget=5, max_failures=5)
    assert survey.failed == []


def test_a_store_blip_at_the_start_of_a_trial_is_waited_out(study, monkeypatch):
    st, storage = study
    lease = _lease(st, storage, [], [])
    real, calls = optuna.Trial.set_user_attr, {"n": 0}

    def blip(self, key, value):
        calls["n"] += 1
        if calls["n"] == 1:  # what a restarting database gives the first write of a trial
            raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))
        return real(self, key, value)

    monkeypatch.setattr(optuna.Trial, "set_user_attr", blip)
    with lease:
        lease.set_attrs(config={"a": 1}, output_dir="/tmp/x")
        lease.complete(0.5, {})
    frozen = storage.get_trial(lease.trial_id)
    assert frozen.state == TrialState.COMPLETE and frozen.user_attrs == {"config": {"a": 1}, "output_dir": "/tmp/x"}
    assert calls["n"] == 3  # the failed write, its retry, and the second attribute


def test_claims_stop_at_the_budget_and_count_only_real_failures(study):
    st, storage = study
    for i in range(3):
        lease = _lease(st, storage, [], []) if i == 0 else claim(st, storage, 3, 5)[1]
        with lease:
            if i == 1:
                raise RuntimeError("out of luck")
            lease.complete(0.1 * i, {})
    survey, lease = claim(st, storage, budget=2, max_failures=5)
    assert (survey.done, len(survey.failed), survey.best, lease) == (2, 1, pytest.approx(0.2), None)
    assert len(st.get_trials()) == 3  # no token was added once the budget was met


def test_a_dying_process_leaves_the_w_and_b_run_open_and_still_frees_memory(study):
    """SystemExit (a third signal, the interpreter ending): the trial goes stale and is retried; nothing of its
    end reached the store, so its W&B run is not closed as if it had (W&B marks it crashed), and memory is freed."""
    st, storage = study
    cleanups, mirror = [], _Mirror()
    lease = _lease(st, storage, cleanups, [])
    with pytest.raises(SystemExit):
        with lease:
            lease.on_end(mirror)
            raise SystemExit(1)
    assert cleanups == [1] and mirror.finished == []
    assert storage.get_trial(lease.trial_id).state == TrialState.RUNNING
