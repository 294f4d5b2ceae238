"""What the pruner saw: each trial's reported macro_f1 per epoch (per fold with cv), completed trials and pruned
ones (with an × where they stopped) in colours of their own, the best trial on top, and a y range where the
trials differ."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState

from search.observe.report._view import BEST_COLOR, STATE_COLORS, LeftOut, StudyView, new_figure
from search.ranking import METRIC

__all__ = ["intermediate_values"]

CLIP_PERCENTILE = 10  # the y axis starts near this percentile of all reports: early, low epochs go off the chart


def _reports(trial: FrozenTrial) -> tuple[list[int], list[float]]:
    steps = sorted(s for s, v in trial.intermediate_values.items() if math.isfinite(v))
    return steps, [trial.intermediate_values[s] for s in steps]


def _y_range(values: list[float]) -> tuple[float, float]:
    """From about the 10th percentile of the reports to the highest: where trials differ. A floor that would
    hide little (the lowest report not far below it) shows everything instead."""
    lowest, top = min(values), max(values)
    floor = float(np.percentile(values, CLIP_PERCENTILE))
    if lowest >= floor - 0.25 * (top - floor):
        floor = lowest
    pad = 0.04 * (top - floor) or 0.01
    return floor - pad, top + pad


def _trial_curve(ax, trial: FrozenTrial, alpha: float, floor: float) -> None:
    steps, values = _reports(trial)
    if trial.state == TrialState.COMPLETE:
        ax.plot(steps, values, color=STATE_COLORS["COMPLETE"], lw=1.0, alpha=alpha, zorder=2)
    elif trial.state == TrialState.PRUNED:  # an × where the pruner stopped it; a ▼ on the floor if that is lower
        ax.plot(steps, values, color=STATE_COLORS["PRUNED"], lw=1.0, alpha=alpha, zorder=3)
        low = values[-1] < floor
        ax.plot(steps[-1], max(values[-1], floor), marker="v" if low else "x", ms=6, mew=1.5,
                color=STATE_COLORS["PRUNED"], zorder=4, clip_on=False)
    else:  # failed, or still running; a dot, so a trial with one report shows too
        ax.plot(steps, values, color=STATE_COLORS["WAITING"], lw=1.0, ls=":", marker=".", alpha=alpha, zorder=2)


def _intermediate_legend(ax, reported: list[FrozenTrial], best: FrozenTrial | None) -> None:
    count = {s: sum(t.state == s for t in reported) for s in (TrialState.COMPLETE, TrialState.PRUNED)}
    others = len(reported) - sum(count.values())
    handles = [Line2D([], [], color=STATE_COLORS["COMPLETE"], label=f"completed ({count[TrialState.COMPLETE]})"),
               Line2D([], [], color=STATE_COLORS["PRUNED"], marker="x", mew=1.5,
                      label=f"pruned ({count[TrialState.PRUNED]}), × where it stopped")]
    if others:
        handles.append(Line2D([], [], color=STATE_COLORS["WAITING"], ls=":", label=f"failed or running ({others})"))
    if best is not None:
        handles.append(Line2D([], [], color=BEST_COLOR, lw=2.4, label=f"best: trial {best.number}"))
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)


def intermediate_values(view: StudyView) -> Figure:
    """Each trial's reports per epoch (per fold with cv), coloured by how the trial ended, the best on top."""
    reported = [t for t in view.trials if _reports(t)[0]]
    if not reported:
        raise LeftOut("intermediate values: no trial reported one, so a pruner had nothing to judge")
    values = [v for t in reported for v in _reports(t)[1]]
    floor, top = _y_range(values)
    fig = new_figure(7.5, 4.6)
    ax = fig.add_subplot()
    alpha = 0.85 if len(reported) <= 20 else max(0.3, 0.85 * math.sqrt(20 / len(reported)))
    best = view.best if view.best is not None and _reports(view.best)[0] else None
    for t in reported:
        if t is not best:
            _trial_curve(ax, t, alpha, floor)
    if best is not None:
        steps, best_values = _reports(best)
        ax.plot(steps, best_values, color=BEST_COLOR, lw=2.4, zorder=5, gid="best")
        ax.annotate(f"best: trial {best.number}", (steps[-1], best_values[-1]), xytext=(-4, 6),
                    textcoords="offset points", ha="right", va="bottom", fontsize=8.5, fontweight="bold")
    ax.set_ylim(floor, top)
    clipped = sum(v < floor for v in values)
    step = "fold" if view.cross_validated else "epoch"  # what a step is (search/workers/_epoch_reports.py)
    ax.set_ylabel(f"{METRIC} reported" + (f"\n(▼ {clipped} of {len(values)} reports below {floor:.3g} not shown)"
                                          if clipped else ""))
    ax.set_xlabel(step)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.set_title(f"what the pruner saw: each trial's {METRIC} per {step}", loc="left", fontsize=10)
    _intermediate_legend(ax, reported, best)
    fig.tight_layout()
    return fig
