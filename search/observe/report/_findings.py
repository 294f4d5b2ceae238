"""What each study-wide figure of the report shows, in page order: its title, its caption (how to read it) and
its finding (what it shows of this study, in a sentence under it, computed from the same trials)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import optuna
from matplotlib.figure import Figure
from optuna.trial import TrialState

from search.observe.report._cost import f1_per_hour, per_hour, rate_leaders, rate_text, time_per_trial, time_scale
from search.observe.report._optuna_plots import history, importances, slices
from search.observe.report._parallel import parallel_coordinates
from search.observe.report._pruning import intermediate_values
from search.observe.report._view import ROUGH_BELOW, StudyView, device_kind, hour_unit, hours
from search.ranking import METRIC

__all__ = ["STUDY_FIGURES", "Caption", "Finding"]


def _auto_note(view: StudyView) -> str:
    auto = any(device_kind(t) == "device" for t in view.timed)
    return " train.device is auto: a GPU where the trial's worker had one, else its CPU." if auto else ""


def _importances_caption(view: StudyView) -> str:
    return (f"Optuna's default evaluator (PED-ANOVA) over the {len(view.completed)} completed trials: how much "
            f"each parameter decides reaching the top 10% of {METRIC} values.")


PARALLEL_CAPTION = (
    f"One line per completed trial, through its parameters to its {METRIC} on the last axis. Colour is the "
    f"trial's {METRIC} rank, dark purple the worst to green the best; the best trial is drawn thick, "
    "outlined and labelled. Log-distributed parameters have log axes, categorical ones their choices. A "
    "conditional parameter that a trial did not use is drawn at the \"inactive\" mark below its axis.")

INTERMEDIATE_CAPTION = (
    f"The {METRIC} each trial reported per epoch (with cv: per fold), which a pruner compares across trials: "
    "completed trials green, pruned ones orange with × where they were stopped, failed ones dotted grey, the best "
    "trial black. The y axis spans where trials differ, from about the lowest tenth of the reports up; its label "
    "counts any reports it leaves below.")


def _time_caption(view: StudyView) -> str:
    return ("Each finished trial's time, start to finish, coloured by state (trials that share a GPU each count "
            f"their whole time).{_auto_note(view)}")


def _rate_caption(view: StudyView) -> str:
    unit = hour_unit(view.timed)
    return (f"Each completed trial's {METRIC} against the time it ran: its {METRIC} per {unit} is the slope of "
            f"the line from the origin to it, so the rate rewards cheap trials as much as good ones. The dashed "
            f"line is the highest rate; the star is the best {METRIC}, the dotted line its rate. Pruned and "
            f"failed trials have no final {METRIC} and sit on the time axis.{_auto_note(view)}")


# Findings: what each figure shows of this study, in a sentence under it, computed from the same trials.
STATE_WORDS = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed"}


def _runs(numbers: list[int]) -> str:
    """Trial numbers as runs: ``2-4, 7``."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


def _trials(numbers: list[int]) -> str:
    """``trial 3``, ``trials 2-4``, or ``23 trials`` where the numbers would be a wall of them."""
    return f"{len(numbers)} trials" if len(numbers) > 8 else \
        f"trial{'s' if len(numbers) > 1 else ''} {_runs(numbers)}"


def _history_finding(view: StudyView) -> str:
    best = view.best
    after = sum(t.number > best.number for t in view.trials)
    return (f"The best {METRIC}, {best.value:.4f}, came from trial {best.number}"
            + (f"; none of the {after} trials since has beaten it." if after else ", the latest trial."))


def _importances_finding(view: StudyView) -> str:
    ranked = list(view.importances.items())
    n = len(view.completed)
    text = ("Most important: " + ", ".join(f"{name} {value:.2f}" for name, value in ranked[:3])
            + (f" (3 of {len(ranked)} parameters)" if len(ranked) > 3 else "") + f"; from {n} completed trials")
    if n < ROUGH_BELOW:
        top = math.ceil(0.1 * n)  # PED-ANOVA's default top quantile
        text += (f", too few for a firm ranking: PED-ANOVA contrasts the top 10% ({top} trial{'s' if top > 1 else ''})"
                 f" with the rest, and Optuna advises at least 5 there ({ROUGH_BELOW} completed trials). "
                 "Read it as rough; a few more trials can reorder it")
    return text + "."


def _below_median(trial: optuna.trial.FrozenTrial, completed: list[optuna.trial.FrozenTrial]) -> bool | None:
    """Was the pruned trial's last report below the median of the completed trials' reports at that step (what a
    median pruner compares it with)? None where no completed trial reported that step."""
    step = trial.last_step
    others = [v for t in completed if math.isfinite(v := t.intermediate_values.get(step, math.nan))]
    return trial.intermediate_values[step] < statistics.median(others) if others else None


def _intermediate_finding(view: StudyView) -> str:
    step = "fold" if view.cross_validated else "epoch"
    done = [t.last_step for t in view.completed if t.last_step is not None]
    ran = (f"{len(done)} completed trial{'s' if len(done) > 1 else ''} reported up to {step} {max(done)}" if done
           else "no trial has completed")
    pruned = [t for t in view.trials if t.state == TrialState.PRUNED and t.last_step is not None]
    if not pruned:
        return f"No trial was pruned; {ran}."
    at: dict[int, list[int]] = {}
    for t in pruned:
        at.setdefault(t.last_step, []).append(t.number)
    stops = "; ".join(f"{_trials(numbers)} after {step} {s}" for s, numbers in sorted(at.items()))
    below = [b for b in (_below_median(t, view.completed) for t in pruned) if b is not None]
    share = "each" if len(below) == len(pruned) and all(below) else f"{sum(below)} of {len(pruned)}"
    verdict = f" ({share} below the median the completed trials reported at that {step})" if below else ""
    return f"Pruned: {stops}{verdict}; {ran}."


def _time_finding(view: StudyView) -> str:
    unit = hour_unit(view.timed)
    spent: dict[str, list[float]] = {s: [] for s in STATE_WORDS}  # this order; states without trials dropped
    for t in view.timed:
        spent.setdefault(t.state.name, []).append(hours(t))
    split = ", ".join(f"{sum(h):.3g} by {len(h)} {STATE_WORDS.get(s, s.lower())}" for s, h in spent.items() if h)
    longest = max(view.timed, key=hours)
    scale, time_unit = time_scale([longest.duration.total_seconds()])
    return (f"{len(view.timed)} finished trials ran {sum(map(sum, spent.values())):.3g} {unit}s in all ({split}); "
            f"the longest, trial {longest.number} ({STATE_WORDS.get(longest.state.name, longest.state.name.lower())}), "
            f"ran {longest.duration.total_seconds() / scale:.3g} {time_unit}.")


def _rate_finding(view: StudyView) -> str:
    unit = hour_unit(view.timed)
    best, fastest = rate_leaders(view)
    rate = rate_text

    def spent(t: optuna.trial.FrozenTrial) -> str:
        return f"{METRIC} {t.value:.4f} in {hours(t):.3g} {unit}s"

    if fastest is best:
        return (f"The best trial, {best.number}, also bought the most {METRIC} per {unit}: "
                f"{rate(per_hour(best))} ({spent(best)}).")
    return (f"Most {METRIC} per {unit}: trial {fastest.number}, {rate(per_hour(fastest))} ({spent(fastest)})"
            f"; the best trial, {best.number}, bought {rate(per_hour(best))} ({spent(best)}). "
            f"A high rate marks a cheap trial, not a better model.")


Caption = str | Callable[[StudyView], str]
Finding = Callable[[StudyView], str] | None
# (PNG name, title, caption, figure, finding): the study-wide figures, in page order
STUDY_FIGURES: tuple[tuple[str, str, Caption, Callable[[StudyView], Figure], Finding], ...] = (
    ("history.png", "Optimization history", f"Each completed trial's {METRIC}, and the best so far.",
     history, _history_finding),
    ("importances.png", "Parameter importances", _importances_caption, importances, _importances_finding),
    ("parallel.png", "Parallel coordinates", PARALLEL_CAPTION, parallel_coordinates, None),
    ("slices.png", "Slices of the most important parameters", f"{METRIC} against each parameter's value.",
     slices, None),
    ("intermediate.png", "Intermediate values: what the pruner saw", INTERMEDIATE_CAPTION,
     intermediate_values, _intermediate_finding),
    ("time.png", "Time per trial", _time_caption, time_per_trial, _time_finding),
    # unit: the trials' train.device
    ("f1_per_hour.png", f"{METRIC} per {{unit}}", _rate_caption, f1_per_hour, _rate_finding),
)
