"""The objective's name and the order of trials: the best completed trial and the top k, in one place.

Every study of ours maximizes one value, the best epoch's validation macro-F1 (with ``cv:``, the folds' mean),
named ``macro_f1`` in the store so that the dashboard and Optuna's CLI show it. Of two trials with the same
value the earlier one ranks first, as ``study.best_trial`` picks it. A leaf module: everything else may use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["METRIC", "best_or_none", "best_value", "best_of", "ranked", "completed"]

METRIC = "macro_f1"


class _Scored(Protocol):
    number: int
    value: float | None


S = TypeVar("S", bound=_Scored)


def completed(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that completed with a value (what ranks)."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]


def ranked(trials: Iterable[S]) -> list[S]:
    """Best first; equal values: the earlier trial first (the order of the top k everywhere). Trials without a
    value are left out. ``trials`` may hold stand-ins with ``number`` and ``value`` (a value not yet told)."""
    return sorted((t for t in trials if t.value is not None), key=lambda t: (-t.value, t.number))


def best_of(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The best completed trial among ``trials``, or None."""
    top = ranked(completed(trials))
    return top[0] if top else None


def best_value(trials: Iterable[FrozenTrial]) -> float | None:
    best = best_of(trials)
    return None if best is None else best.value


def best_or_none(study: optuna.Study) -> FrozenTrial | None:
    """The study's best completed trial, or None before the first completes (one ordered query on an RDB
    store, rather than reading every trial)."""
    try:
        return study.best_trial
    except ValueError:
        return None
