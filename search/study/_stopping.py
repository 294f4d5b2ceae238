"""Study-level stopping: ``stop: {patience_trials: N, min_delta: D}`` ends the study, on every worker, once the
best macro-F1 has not improved by D over the last N finished trials.

Checked at every claim, under the study lock, from the same read of the trials. The verdict is kept on the study
(user attribute ``stopped``) with the settings that reached it, so that it holds for every worker even when a
trial still running elsewhere finishes better afterwards; a run with other settings judges afresh.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import Field

from search.ranking import best_value
from training.config import StrictModel

__all__ = ["StopConfig", "stop_reason", "judge", "forget_other_verdict", "STOP_ATTR"]

STOP_ATTR = "stopped"


class StopConfig(StrictModel):
    patience_trials: int = Field(ge=1, description="finished trials (complete or pruned) without an improvement")
    min_delta: float = Field(0.0, ge=0.0, lt=1.0, description="an improvement of the best macro-F1 smaller than "
                             "this does not count (macro-F1 lies in [0, 1])")


def stop_reason(trials: list[FrozenTrial], stop: StopConfig) -> str | None:
    """Why the study should stop now, or None. The window is the last N finished trials in the order they
    finished; the best before it must exist (a study whose first trials all failed or were pruned goes on)."""
    finished = sorted((t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)),
                      key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))
    n = stop.patience_trials
    if len(finished) <= n:
        return None
    before, window = finished[:-n], finished[-n:]
    best_before = best_value(before)
    if best_before is None:
        return None
    best_now = max(best_before, best_value(window) or best_before)
    gain = best_now - best_before
    if gain > 0 and gain >= stop.min_delta - 1e-12:  # 0.57 - 0.56 is 0.0099999...: it is an improvement of 0.01
        return None
    by = f" by {stop.min_delta:g}" if stop.min_delta else ""
    return (f"stopped early: the best macro_f1 {best_before:.4f} (before the last {n} finished trials; "
            f"{best_now:.4f} with them) has not improved{by} (stop.patience_trials = {n}; raise it, lower "
            "stop.min_delta or remove `stop:` to go on)")


def judge(study: optuna.Study, trials: list[FrozenTrial], stop: StopConfig | None) -> str | None:
    """The study's stop verdict under these settings: the one on record when it was reached with the same
    settings, else :func:`stop_reason` (recorded when it says stop). A verdict of other settings is cleared."""
    if stop is None:  # no read at all: a verdict of earlier settings is cleared when the study opens
        return None
    settings = stop.model_dump()
    recorded = study.user_attrs.get(STOP_ATTR)
    if recorded and recorded.get("settings") == settings:
        return recorded["reason"]
    reason = stop_reason(trials, stop)
    if reason or recorded:
        study.set_user_attr(STOP_ATTR, {"reason": reason, "settings": settings} if reason else None)
    return reason


def forget_other_verdict(study: optuna.Study, stop: StopConfig | None) -> None:
    """When a study opens: clear a verdict that settings other than these reached (none: `stop:` removed)."""
    recorded = study.user_attrs.get(STOP_ATTR)
    if recorded and recorded.get("settings") != (None if stop is None else stop.model_dump()):
        study.set_user_attr(STOP_ATTR, None)
