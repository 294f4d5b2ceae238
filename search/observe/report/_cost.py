"""What the study cost: time per trial, and macro_f1 against the time each trial ran (its macro_f1 per GPU- or
CPU-hour is a point's slope from the origin; pruned and failed trials sit on the time axis)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory
from optuna.trial import FrozenTrial, TrialState

from search.observe.report._view import BEST_COLOR, STATE_COLORS, LeftOut, StudyView, hour_unit, hours, new_figure
from search.ranking import METRIC

__all__ = ["time_per_trial", "f1_per_hour", "time_scale", "per_hour", "rate_text", "rate_leaders"]


def time_scale(seconds: list[float]) -> tuple[float, str]:
    longest = max(seconds)
    return (3600.0, "hours") if longest >= 3 * 3600 else (60.0, "minutes") if longest >= 180 else (1.0, "seconds")


def time_per_trial(view: StudyView) -> Figure:
    if not view.timed:
        raise LeftOut("time per trial: no trial has finished yet")
    seconds = [t.duration.total_seconds() for t in view.timed]
    scale, unit = time_scale(seconds)
    # a bar's width shrinks with many trials rather than the figure growing past what a page shows
    fig, ax = plt.subplots(figsize=(min(12.0, max(6.0, 0.25 * len(view.timed) + 2)), 3.8))
    ax.bar([t.number for t in view.timed], [s / scale for s in seconds],
           color=[STATE_COLORS.get(t.state.name, "#616161") for t in view.timed])
    ax.legend(handles=[Patch(color=STATE_COLORS.get(state, "#616161"), label=state.lower())
                       for state in dict.fromkeys(t.state.name for t in view.timed)], loc="best")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(unit)
    ax.set_title("time per trial (start to finish)", loc="left")
    fig.tight_layout()
    return fig


def _rated(view: StudyView) -> list[FrozenTrial]:
    """Completed trials with a measured duration: those with a macro_f1 per hour."""
    return [t for t in view.completed if hours(t) > 0]


def _rate_points(ax, view: StudyView, x) -> None:
    """Completed trials as dots at their macro_f1. Pruned and failed trials have no final macro_f1, only a cost:
    they sit on the x axis at the time they took, each state with its own marker."""
    shown = [t for t in view.timed if hours(t) > 0]
    done = [t for t in shown if t.state == TrialState.COMPLETE and t.value is not None]
    ax.scatter([x(t) for t in done], [t.value for t in done], s=22, color=STATE_COLORS["COMPLETE"], zorder=3,
               label=f"completed ({len(done)})")
    on_axis = blended_transform_factory(ax.transData, ax.transAxes)
    for state, marker, what in (("PRUNED", "x", "pruned"), ("FAIL", "v", "failed")):
        group = [t for t in shown if t.state.name == state]
        if group:
            ax.plot([x(t) for t in group], [0.03] * len(group), ls="none", marker=marker, ms=6, mew=1.5,
                    alpha=0.8, color=STATE_COLORS[state], transform=on_axis, zorder=4,
                    label=f"{what} ({len(group)}): no final {METRIC}, placed by its time")


def per_hour(trial: FrozenTrial) -> float:
    return trial.value / hours(trial)


def rate_text(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def rate_leaders(view: StudyView) -> tuple[FrozenTrial, FrozenTrial]:
    """The best trial (of those with a measured time) and the one that bought the most macro_f1 per hour."""
    rated = _rated(view)
    best = view.best if view.best in rated else view.worst_first(rated)[-1]
    return best, max(rated, key=per_hour)


def _rate_marks(ax, view: StudyView, x, unit: str) -> None:
    """The best trial as a star; through the origin, the line of the most macro_f1 per hour (no completed trial
    lies above it) and, when that is another trial's, the best trial's flatter one."""
    best, fastest = rate_leaders(view)
    ax.scatter([x(best)], [best.value], s=200, marker="*", color=STATE_COLORS["COMPLETE"], edgecolor=BEST_COLOR,
               linewidth=1.2, zorder=5, label=f"best {METRIC}: trial {best.number}")
    ax.annotate(f"trial {best.number}", (x(best), best.value), xytext=(8, 2), textcoords="offset points",
                fontsize=8.5, fontweight="bold")
    lines = [(fastest, "--", "the most" + (f", and the best {METRIC}" if fastest is best else ""))]
    if fastest is not best:
        lines.append((best, ":", f"the best {METRIC}'s"))
        ax.annotate(f"trial {fastest.number}", (x(fastest), fastest.value), xytext=(-7, 0), ha="right",
                    va="center", textcoords="offset points", fontsize=8.5, color="#37474f")
    right = ax.get_xlim()[1]
    for t, style, what in lines:
        ax.plot([0.0, right], [0.0, t.value * right / x(t)], ls=style, lw=1.3, color="#37474f", zorder=1,
                label=f"slope {rate_text(per_hour(t))}: trial {t.number}'s {METRIC} per {unit}, {what}")


def f1_per_hour(view: StudyView) -> Figure:
    """macro_f1 against the hours each trial ran: macro_f1 per hour is a point's slope from the origin."""
    if not _rated(view):
        raise LeftOut(f"{METRIC} per device-hour: no completed trial has a measured duration")
    unit = hour_unit(view.timed)  # the same unit as the time figure's
    scale, time_unit = time_scale([t.duration.total_seconds() for t in view.timed])
    fig = new_figure(8.0, 5.4, layout="constrained")  # it makes room for the legend below the chart
    ax = fig.add_subplot()
    _rate_points(ax, view, x := lambda t: t.duration.total_seconds() / scale)
    values = [t.value for t in _rated(view)]
    pad = 0.06 * (max(values) - min(values)) or 0.01
    # where the completed trials differ, and a strip at the bottom for the others; the origin lies below
    ax.set_ylim(min(values) - 2.5 * pad, max(values) + pad)
    ax.set_xlim(0.0, 1.08 * max(x(t) for t in view.timed))
    _rate_marks(ax, view, x, unit)
    ax.set_xlabel(f"{time_unit} the trial ran ({unit.removesuffix('-hour')})")
    ax.set_ylabel(METRIC)
    ax.grid(alpha=0.3)
    ax.set_title(f"{METRIC} against time: a trial's slope from 0 is its {METRIC} per {unit}", loc="left",
                 fontsize=10)
    # below the chart: inside, it would cover trials
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower left", ncol=2, fontsize=8, frameon=False)
    return fig
