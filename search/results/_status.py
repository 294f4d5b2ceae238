"""``search status``: what a study holds, as a dict (printed or as JSON)."""

from __future__ import annotations

import optuna

from search.ranking import best_or_none
from search.store import counts
from search.study import STOP_ATTR

__all__ = ["study_status"]


def study_status(study: optuna.Study) -> dict:
    trials = study.get_trials(deepcopy=False)
    c = counts(study)
    best = best_or_none(study)
    return {
        "study": study.study_name,
        "budget": study.user_attrs.get("n_trials"),
        "finished": c["complete"] + c["pruned"],
        "counts": {k: v for k, v in c.items() if v},
        "stopped": (study.user_attrs.get(STOP_ATTR) or {}).get("reason"),  # why it stopped early, or None
        "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params,
                                           "per_class_f1": best.user_attrs.get("per_class_f1"),
                                           "output_dir": best.user_attrs.get("output_dir")},
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                    "reason": t.user_attrs.get("fail_reason"),
                    "seconds": t.duration.total_seconds() if t.duration else None} for t in trials],
    }
