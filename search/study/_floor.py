"""The median pruner's floor: a rule beside the median for when most completed trials are poor.

Optuna's median rule stops a trial whose best macro-F1 so far is below the median of the completed trials' values
at the same epoch. When most of the space learns nothing within the budget (SGD at a tiny learning rate, say),
most completed trials sit at chance, so does their median, and a trial at chance is not below it: the rule never
fires. The floor stops such a trial too: its best so far is below ``floor`` x the best value any completed trial
had at the same epoch. It acts under the median's own start-up and warm-up, so it never judges a trial that the
median would not.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["FloorPruner"]


class FloorPruner(optuna.pruners.BasePruner):
    """``median`` or the floor. ``n_startup_trials`` and ``n_warmup_steps`` in Optuna's terms (steps from 0)."""

    def __init__(self, median: optuna.pruners.BasePruner, floor: float, n_startup_trials: int,
                 n_warmup_steps: int) -> None:
        self._median, self._floor = median, floor
        self._startup, self._warmup = n_startup_trials, n_warmup_steps

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if self._median.prune(study, trial):
            return True
        step = trial.last_step
        if step is None or step < self._warmup:
            return False
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(completed) < self._startup:
            return False
        at = [v for t in completed if (v := t.intermediate_values.get(step)) is not None and math.isfinite(v)]
        mine = [v for s, v in trial.intermediate_values.items() if s <= step and math.isfinite(v)]
        return bool(at and mine) and max(mine) < self._floor * max(at)
