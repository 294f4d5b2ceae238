"""A worker: pull trials from the store until the study holds its budget of finished trials."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

from search.errors import BudgetError, StorageError
from search.observe.progress import WorkerDisplay
from search.ranking import METRIC
from search.store import claim, counts, open_storage, redact, with_store_retry
from search.study import StudyConfig, build_pruner, build_sampler, forget_other_verdict, judge
from search.workers._per_gpu import apply_gpu_share
from search.workers._trial import TrialContext, WorkerStopped, run_trial, trial_hooks

__all__ = ["open_study", "work", "budget_of", "WorkerResult", "worker_seed"]

log = logging.getLogger(__name__)


def worker_seed(study_seed: int, worker: int, n_existing: int) -> int:
    """A worker's sampler seed: (the study's seed, the worker, the trials the study already holds) through numpy's
    SeedSequence, a real mixer, so that no two triples share a stream. A sum would not do: seed 1's second worker
    would draw exactly what seed 2's first draws, and "independent" repeats of a benchmark over seeds would share
    their trials. The same triple gives the same seed: a rerun is reproducible."""
    return int(np.random.SeedSequence([study_seed, worker, n_existing]).generate_state(1)[0])


def _sampler(sc: StudyConfig, worker_index: int | None, n_existing: int, budget: int) -> optuna.samplers.BaseSampler:
    """Seeded per worker and per the trials the study already holds: a resumed study, or a worker started in a
    killed one's place, must not replay the random draws an earlier worker with the same index made."""
    s = sc.spec.sampler
    who = worker_index if worker_index is not None else os.getpid()
    seed = None if s.seed is None else worker_seed(s.seed, who, n_existing)
    return build_sampler(s, seed, budget)


def _pruner(sc: StudyConfig) -> optuna.pruners.BasePruner:
    return build_pruner(sc.spec.pruner, sc.spec.cv.folds if sc.spec.cv else sc.max_epochs)


def open_study(sc: StudyConfig, storage, url: str, worker_index: int | None = None,
               budget: int | None = None) -> optuna.Study:
    """``budget``: the study's finished-trial budget (default: its recorded n_trials, else the file's), which
    sizes the sampler's random start-up."""
    study = optuna.create_study(study_name=sc.name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(), pruner=_pruner(sc), load_if_exists=True)
    if study.metric_names != [METRIC]:  # the dashboard, Optuna's CLI and exports show the name, not "Objective 0"
        study.set_metric_names([METRIC])
    n_existing = len(study.get_trials(deepcopy=False))
    study.sampler = _sampler(sc, worker_index, n_existing, budget or budget_of(study, sc, None))
    have = study.user_attrs.get("space_hash")
    if have and have != sc.space_hash:
        raise StorageError(f"study '{sc.name}' in {redact(url)} was created with a different search space; "
                           "give the study a new name: in its file, or use another --storage")
    if not have:
        study.set_user_attr("space_hash", sc.space_hash)
        study.set_user_attr("study_file", str(sc.path))
    forget_other_verdict(study, sc.spec.stop)
    return study


def budget_of(study: optuna.Study, sc: StudyConfig, n_trials: int | None) -> int:
    if n_trials is not None:
        return n_trials
    return int(study.user_attrs.get("n_trials", sc.spec.n_trials))


@dataclass
class WorkerResult:
    trials_run: int
    finished: int
    budget: int
    stopped: str | None = None  # why the study stopped early


@contextlib.contextmanager
def _stop_signals():
    """SIGTERM/SIGINT stop the worker by raising WorkerStopped (the running trial is marked and re-queued).
    Ctrl-C reaches a worker twice, from the terminal and forwarded by `search run --workers K`: the second
    signal must not interrupt that re-queue, so it is only noted; a third exits at once (the trial then goes
    stale and is retried). The previous handlers come back when the worker returns."""
    seen = []

    def stop(signum, frame):
        seen.append(signum)
        if len(seen) == 1:
            raise WorkerStopped(signal.Signals(signum).name)
        if len(seen) == 2:
            print("stopping: re-queuing the running trial (signal again to exit now)", file=sys.stderr, flush=True)
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def work(sc: StudyConfig, url: str, *, n_trials: int | None = None, output_root: Path = Path("runs"),
         use_wandb: bool = True, timeout: float | None = None, worker_index: int | None = None,
         display: WorkerDisplay | None = None, tensorboard: Path | None = None) -> WorkerResult:
    """Claim and run trials until ``complete + pruned >= budget``; a bad trial never ends the loop.
    ``display``: how trials are shown (search/observe/progress); default: plain lines. ``tensorboard``: a
    TensorBoard run per trial under it (default: the study file's ``tensorboard``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    display = display or WorkerDisplay()
    with _stop_signals(), display:
        return _work(sc, url, n_trials, output_root, use_wandb, timeout, worker_index, display,
                     tensorboard or sc.spec.tensorboard)


def _work(sc: StudyConfig, url: str, n_trials: int | None, output_root: Path, use_wandb: bool,
          timeout: float | None, worker_index: int | None, display: WorkerDisplay,
          tensorboard: Path | None) -> WorkerResult:
    apply_gpu_share()
    rel = sc.spec.reliability
    storage = open_storage(url, heartbeat_seconds=rel.heartbeat_seconds, max_retries=rel.max_retries)
    study = open_study(sc, storage, url, worker_index, n_trials)
    budget = budget_of(study, sc, n_trials)
    max_failures = rel.max_failures or budget
    tag = f"w{worker_index if worker_index is not None else os.getpid()}"
    ctx = TrialContext(sc, storage, Path(output_root), use_wandb, tag, display=display, tensorboard=tensorboard)
    display.watch(study, budget)
    first = sc.default_params() if sc.spec.seed_trials_with_defaults else None
    deadline = time.monotonic() + timeout if timeout else None
    ran, survey = 0, None
    stop = (lambda st, trials: judge(st, trials, sc.spec.stop)) if sc.spec.stop is not None else None
    while not (deadline and time.monotonic() > deadline):
        survey, lease = with_store_retry(lambda: claim(study, storage, budget, max_failures, first, trial_hooks(ctx),
                                                       stop), "claim a trial")
        if survey.done >= budget:
            break
        if survey.stopped:
            ctx.say(survey.stopped)
            break
        if len(survey.failed) >= max_failures:
            raise BudgetError(f"study '{sc.name}': {len(survey.failed)} trials failed (limit reliability.max_failures="
                              f"{max_failures}); last reason: {survey.failed[-1].user_attrs['fail_reason']}")
        if survey.best is not None:  # the study's best at every claim (other workers finish trials too)
            ctx.best = survey.best
        if lease is None:  # all tokens taken by running trials; wait in case one of them dies
            time.sleep(min(rel.heartbeat_seconds, 2.0))
            continue
        run_trial(lease, ctx)
        ran += 1
    c = with_store_retry(lambda: counts(study), "read the study")
    return WorkerResult(ran, c["complete"] + c["pruned"], budget, survey.stopped if survey else None)
