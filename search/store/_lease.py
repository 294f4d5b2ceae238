"""A trial's lease, from its claim to its end, on public Optuna APIs only.

:func:`claim` runs under the study lock: fail stale trials (Optuna re-queues them through the storage's
RetryHeartbeatStaleTrialCallback), count, top the budget up, and claim a WAITING trial with ``study.ask()``.
``with lease:`` keeps the trial's heartbeat going, sends store calls through one retry, maps the outcome to
COMPLETE, PRUNED or FAIL (with the reason), re-queues the trial on a stop signal, and calls the trial's end hooks
(its artifacts, its W&B run, checkpoint retention, freeing memory: :class:`EndHook`) from one place, each exactly
once. No torch here: ``benchmarks/scale.py`` runs 64 of these in plain processes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from search.ranking import best_value
from search.store._budget import claim_waiting, top_up
from search.store._heartbeat import Heartbeat
from search.store._locks import study_lock
from search.store._retry import with_store_retry
from search.store._storage import RetryCallback
from training.errors import one_line

__all__ = ["claim", "Lease", "Hooks", "EndHook", "Survey", "WorkerStopped"]

log = logging.getLogger(__name__)
T = TypeVar("T")
H = TypeVar("H", bound="EndHook")
StopRule = Callable[[optuna.Study, list[FrozenTrial]], "str | None"]


class WorkerStopped(BaseException):
    """SIGTERM/SIGINT reached the worker: mark the running trial, re-queue it and stop."""


@dataclass(frozen=True)
class Survey:
    done: int                          # COMPLETE + PRUNED
    failed: list[FrozenTrial]          # failed for a reason of their own (not stale, not re-queued)
    best: float | None
    stopped: str | None = None         # why the study stopped early (search/study/_stopping.py), else None


class EndHook:
    """What happens at a trial's end, beside telling the store (artifacts, the W&B run, checkpoint retention,
    freeing memory). ``before_tell``: the outcome is known and the trial can still take attributes (Optuna
    refuses to change a finished one); only for a trial that is about to be told. ``after_tell``: once for every
    lease, however it ended; ``lease.outcome.ended`` says how ("told", "requeued" on a stop signal, "abandoned"
    after an outage; None for a dying process or a tell that failed). Errors are logged, never fatal."""

    def before_tell(self, lease: Lease) -> None:
        pass

    def after_tell(self, lease: Lease) -> None:
        pass


@dataclass(frozen=True)
class Hooks:
    """How the lease talks (``say`` a line, ``explain`` a failure as its reason) and what it calls at the trial's
    end, in this order: ``end``, then the trial's own (:meth:`Lease.on_end`: its W&B run), then ``last``."""
    say: Callable[[str], None] = print
    explain: Callable[[Exception], str] = lambda e: one_line(e, with_last=True)
    end: tuple[EndHook, ...] = ()
    last: tuple[EndHook, ...] = ()


def claim(study: optuna.Study, storage, budget: int, max_failures: int, first_params: dict | None = None,
          hooks: Hooks = Hooks(), stop: StopRule | None = None) -> tuple[Survey, Lease | None]:
    """Under the study lock: fail stale trials, count, ask the ``stop`` rule (why the study should stop, or
    None; search/study/_stopping.py judges it), top up, claim. No lease when the
    budget is met, too many trials failed, the study stopped early, or every token is taken by a running trial
    (one of them may still die and be re-queued)."""
    study.get_trials(deepcopy=False)  # outside the lock: the first read of a long study's finished trials, which
    # the study caches (later reads fetch only unfinished and new trials)
    with study_lock(storage, storage.url, study.study_name):
        fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        survey = _survey(trials)
        if survey.done >= budget or len(survey.failed) >= max_failures:
            return survey, None
        if stop is not None and (stopped := stop(study, trials)):
            return dataclasses.replace(survey, stopped=stopped), None
        top_up(study, budget, first_params, trials)
        trial, trial_id = claim_waiting(study, storage) or (None, None)
    if trial is None:
        return survey, None
    return survey, Lease(study, storage, trial, trial_id, hooks)


def _survey(trials: list[FrozenTrial]) -> Survey:
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    retried = _retried(trials)  # re-queued (stopped, or gone stale): not lost, and not a failure of its own
    failed = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason")
              and t.number not in retried]
    best = best_value(trials)
    return Survey(done, failed, best)


def _retried(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials that some trial re-runs (Optuna's retry history, kept on each retry)."""
    return {n for t in trials for n in RetryCallback.retry_history(t)}


@dataclass
class _Outcome:
    state: TrialState = TrialState.FAIL
    value: float | None = None
    summary: dict = field(default_factory=dict)   # what the trial's W&B run and its end line show
    # how this worker left the trial: "told" (the store has the outcome), "requeued" (a stop signal), "abandoned"
    # (another worker took it over after an outage); None when the end never reached the store (the process is
    # exiting, or the tell itself failed)
    ended: str | None = None

    @property
    def told(self) -> bool:
        return self.ended == "told"


class Lease:
    """One claimed trial. Inside ``with lease:`` the body calls :meth:`complete` with the trial's value, or
    raises: ``optuna.TrialPruned`` prunes it, any other Exception fails it with its reason (the worker goes on),
    a stop signal re-queues it and propagates."""

    def __init__(self, study: optuna.Study, storage, trial: optuna.Trial, trial_id: int, hooks: Hooks) -> None:
        self.study, self.storage, self.trial, self.trial_id, self.hooks = study, storage, trial, trial_id, hooks
        self.number = trial.number
        self.outcome = _Outcome()
        self._end_hooks = [*hooks.end, *hooks.last]
        self._ended_hooks = False
        self._heartbeat: Heartbeat | None = None
        self._t0 = time.perf_counter()

    # -------------------------------------------------------------- the body's calls, each retried alike

    def store(self, fn: Callable[[], T], what: str) -> T:
        return with_store_retry(fn, f"{what} (trial {self.number})")

    def set_attrs(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            self.store(lambda: self.trial.set_user_attr(key, value), f"record {key}")

    def report(self, value: float, step: int) -> None:
        self.store(lambda: self.trial.report(value, step), "report")

    def should_prune(self) -> bool:
        return self.store(self.trial.should_prune, "ask the pruner")

    def frozen(self) -> FrozenTrial:
        return self.store(lambda: self.storage.get_trial(self.trial_id), "read")

    def retried_from(self) -> FrozenTrial | None:
        """This trial as the store holds it when it re-runs a failed one (whose user attributes, output_dir
        included, it inherited), else None."""
        frozen = self.frozen()
        return frozen if RetryCallback.retried_trial_number(frozen) is not None else None

    def on_end(self, hook: H) -> H:
        """Call ``hook`` at this trial's end too, after the worker's own (the trial's W&B run)."""
        self._end_hooks.insert(len(self._end_hooks) - len(self.hooks.last), hook)
        return hook

    def complete(self, value: float, summary: dict) -> None:
        self.outcome = _Outcome(TrialState.COMPLETE, value, summary)

    # -------------------------------------------------------------- the lifecycle

    def __enter__(self) -> Lease:
        interval = self.storage.get_heartbeat_interval()
        if interval:
            self._heartbeat = Heartbeat(self.storage, self.trial_id, interval).__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:  # the heartbeat goes on until the end is told: a tell that waits out an outage must not let
            return self._end(exc)  # another worker fail the trial as stale meanwhile
        finally:
            if self._heartbeat is not None:
                self._heartbeat.__exit__(None, None, None)
            self._after_tell()  # if the end did not already: a dying process, a tell that failed

    def _end(self, exc: BaseException | None) -> bool:
        if isinstance(exc, UpdateFinishedTrialError):
            return self._abandoned()
        if isinstance(exc, (WorkerStopped, KeyboardInterrupt)):
            self._fail("worker stopped by a signal; the trial is re-queued")
            self.outcome.summary = {"reason": "worker stopped"}
            self.store(self._requeue_once, "re-queue")
            self.outcome.ended = "requeued"
            self._after_tell()
            return False
        if exc is not None and not isinstance(exc, Exception):
            return False  # SystemExit and the like: the trial goes stale and is retried
        if isinstance(exc, optuna.TrialPruned):
            self.outcome = _Outcome(TrialState.PRUNED, None, {"reason": str(exc)})
        elif exc is not None:
            self._fail(self.hooks.explain(exc))
            log.debug("trial %d crashed:\n%s", self.number, "".join(traceback.format_exception(exc)))
        elif self.outcome.value is None:
            self._fail("the trial ended without a value")
        for hook in self._end_hooks:
            self._hook(hook.before_tell)
        if not self._tell(self.outcome.state, self.outcome.value):
            return self._abandoned()
        self.outcome.ended = "told"
        self._after_tell()
        o = self.outcome
        what = f"macro_f1={o.value:.4f}" if o.value is not None else o.summary.get("reason", "")
        self.hooks.say(f"trial {self.number} {o.state.name} {what} in {time.perf_counter() - self._t0:.1f}s")
        return True

    def _after_tell(self) -> None:
        """Every end hook's ``after_tell``, in order, once per lease."""
        if self._ended_hooks:
            return
        self._ended_hooks = True
        for hook in self._end_hooks:
            self._hook(hook.after_tell)

    def _hook(self, hook: Callable[[Lease], None]) -> None:
        try:
            hook(self)
        except Exception as e:  # what comes with a trial's end must not fail the trial or the worker
            log.warning("trial %d: %s", self.number, one_line(e, with_last=True))

    def _fail(self, reason: str) -> None:
        log.warning("trial %d failed: %s", self.number, reason)
        self.outcome = _Outcome(TrialState.FAIL, None, {"reason": reason})
        try:
            self.set_attrs(fail_reason=reason)
        except Exception:  # the store may be the thing that failed; the trial still ends
            pass

    def _abandoned(self) -> bool:
        """The store was away longer than the heartbeat grace: another worker failed this trial as stale and
        re-queued it (the retry resumes from our checkpoint). Nothing to tell, nothing lost or duplicated."""
        self.hooks.say(f"trial {self.number} abandoned: it was re-queued while the store was unreachable")
        self.outcome = _Outcome(TrialState.FAIL, None, {"reason": "re-queued after a storage outage"}, "abandoned")
        self._after_tell()
        return True

    def _tell(self, state: TrialState, value: float | None) -> bool:
        """Tell the outcome, waiting out a database outage. False when the trial had already ended otherwise
        (failed as stale by another worker); a retry after a lost reply finds it ended as told: True."""
        def once() -> bool:
            try:
                if state == TrialState.COMPLETE:
                    self.study.tell(self.trial, value)
                else:
                    self.study.tell(self.trial, state=state)
                return True
            except (UpdateFinishedTrialError, ValueError) as e:  # "Cannot tell a COMPLETE trial." / "finished"
                if "cannot tell" not in str(e).lower() and "finished" not in str(e).lower():
                    raise
                return self.storage.get_trial(self.trial_id).state == state

        return self.store(once, "record the end")

    def _requeue_once(self) -> None:
        """Under the study lock, where stale trials are failed and retried, so that exactly one of us re-queues
        it; safe to repeat (a store retry): it acts only while the trial is RUNNING, and marks it first."""
        with study_lock(self.storage, self.storage.url, self.study.study_name):
            if self.storage.get_trial(self.trial_id).state != TrialState.RUNNING:
                return
            if self.number not in _retried(self.study.get_trials(deepcopy=False)):  # not yet re-queued
                self._requeue()
            self._tell(TrialState.FAIL, None)

    def _requeue(self) -> None:
        """Put the trial's params back as a WAITING trial, which resumes from its checkpoint; its retry history
        names this trial, so the survey does not count this one as a failure."""
        requeue = RetryCallback(max_retry=None, inherit_intermediate_values=True)
        requeue(self.study, self.storage.get_trial(self.trial_id))


