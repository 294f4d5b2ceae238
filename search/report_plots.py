"""The study-wide figures of ``search report``: Optuna's own plots (``optuna.visualization.matplotlib``) of the
history, importances and slices, and ours where Optuna's hide their point: parallel coordinates (readable axes,
inactive parameters, a colour map without white), intermediate values (pruned against completed, a y range where
trials differ), time per trial and macro-F1 against device-hours.

Each figure function takes a :class:`StudyView` and returns a matplotlib Figure, or raises :class:`LeftOut`
with the reason the study cannot support it yet (the page prints that line instead of the image).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import matplotlib

matplotlib.use("Agg")  # files only, never a window: the report runs on headless servers

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from matplotlib import colormaps, patheffects  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import (
    LineCollection,  # noqa: E402
    PathCollection,  # noqa: E402
)
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution  # noqa: E402
from optuna.study import StudyDirection  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

__all__ = ["LeftOut", "StudyView", "device_kind", "hour_unit", "hours", "STATE_COLORS", "RANK_COLORS",
           "ROUGH_BELOW", "history", "importances", "parallel_coordinates", "slices", "intermediate_values",
           "time_per_trial", "f1_per_hour", "per_hour", "rate_text", "rate_leaders", "time_scale"]

METRIC = "macro_f1"
SLICE_PARAMS = 3  # slice plots of this many of the most important parameters
SLICE_CMAP = "viridis"  # trial number: dark early, yellow late; never white
STATE_COLORS = {"COMPLETE": "#2e7d32", "PRUNED": "#ef6c00", "FAIL": "#c62828", "RUNNING": "#1565c0",
                "WAITING": "#9e9e9e"}
BEST_COLOR = "#111111"
# PED-ANOVA (Optuna's default evaluator) compares the top 10% of the completed trials with all of them, and
# Optuna's docs advise at least 5 trials in that top: below 50 completed trials the ranking is rough
ROUGH_BELOW = 50
# viridis without its light yellow end: the worst trial is dark purple, the best green, and no trial's line is
# drawn near-white on the white page (none lighter than luminance 0.67)
RANK_COLORS = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.75, 256)), name="viridis_no_white")


class LeftOut(Exception):
    """This figure needs more than the study holds; the message says what."""


@dataclass
class StudyView:
    """What decides which figures a study supports, read from the store once (Optuna's plots read the study
    again themselves)."""

    study: optuna.Study
    trials: list[FrozenTrial] = field(init=False)

    def __post_init__(self) -> None:
        self.trials = self.study.get_trials(deepcopy=False)

    @cached_property
    def completed(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE and t.value is not None]

    @cached_property
    def best(self) -> FrozenTrial | None:
        """The best completed trial (the first of equals, as ``study.best_trial`` picks it)."""
        return self.worst_first(self.completed)[-1] if self.completed else None

    def worst_first(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """Completed trials from the worst value to the best (of equals, the earliest last): drawn in this order,
        better lines lie over worse ones."""
        sign = 1.0 if self.study.direction == StudyDirection.MAXIMIZE else -1.0
        return sorted(trials, key=lambda t: (sign * t.value, -t.number))

    @cached_property
    def params(self) -> list[str]:
        """The parameters of the completed trials, in the order they were first sampled."""
        return list(dict.fromkeys(p for t in self.completed for p in t.params))

    @cached_property
    def cross_validated(self) -> bool:
        """A ``cv:`` study: its trials report one score per fold, and record them all when they complete."""
        return any("fold_macro_f1" in t.user_attrs for t in self.trials)

    @cached_property
    def timed(self) -> list[FrozenTrial]:
        """Trials that ran to an end (complete, pruned, failed), with how long they took."""
        return [t for t in self.trials if t.state.is_finished() and t.duration is not None]

    @cached_property
    def importances(self) -> dict[str, float]:
        """Optuna's default importance evaluator on the completed trials, most important first."""
        self.need_completed(2, "parameter importances")
        if len(self.params) < 2:
            raise LeftOut(f"parameter importances: the study searches {len(self.params)} parameter(s); "
                          "importances rank two or more")
        if len({t.value for t in self.completed}) == 1:
            raise LeftOut(f"parameter importances: every completed trial has {METRIC} "
                          f"{self.completed[0].value:.4f}; there is no difference to attribute")
        return optuna.importance.get_param_importances(self.study)

    def need_completed(self, n: int, what: str) -> None:
        have = len(self.completed)
        if have < n:
            raise LeftOut(f"{what}: needs {n} completed trial{'s' if n > 1 else ''}, the study has {have}")


def device_kind(trial: FrozenTrial) -> str:
    """GPU or CPU, from the device the trial recorded at its start; for a trial stored before trials recorded
    it, from its config (``device`` when that says auto: a GPU where the trial's worker had one, else its CPU)."""
    device = trial.user_attrs.get("device") or \
        str(((trial.user_attrs.get("config") or {}).get("train") or {}).get("device", "auto"))
    return "CPU" if device == "cpu" else "GPU" if device.startswith("cuda") else "device"


def hour_unit(trials: list[FrozenTrial]) -> str:
    kinds = {device_kind(t) for t in trials}
    return f"{kinds.pop()}-hour" if len(kinds) == 1 else "device-hour"


def hours(trial: FrozenTrial) -> float:
    return trial.duration.total_seconds() / 3600.0 if trial.duration is not None else 0.0


def _new_figure(width: float, height: float, layout: str | None = None) -> Figure:
    """A Figure on its own Agg canvas (no pyplot state): it can be drawn, measured and saved."""
    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _figure_of(axes) -> Figure:
    """Optuna's plots return one Axes, or an array of them (slices): the figure they share."""
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure


def _quietly(plot, *args, **kwargs) -> Figure:
    # a parameter that every plotted trial shares gives an axis with equal limits; matplotlib widens it and
    # warns, which would be a stray line on the command's stderr
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Attempting to set identical")
        return _figure_of(plot(*args, **kwargs))


def history(view: StudyView) -> Figure:
    view.need_completed(1, "optimization history")
    fig = _quietly(optuna_plots.plot_optimization_history, view.study, target_name=METRIC)
    fig.axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def importances(view: StudyView) -> Figure:
    if not view.importances:  # raises LeftOut when the study cannot rank its parameters
        raise LeftOut("parameter importances: Optuna's evaluator ranked no parameter")
    fig = _quietly(optuna_plots.plot_param_importances, view.study, target_name=METRIC)
    n = len(view.completed)
    if n < ROUGH_BELOW:  # the bars' two decimals look precise; say on the figure itself what they rest on
        fig.axes[0].set_title(f"Importances, rough: from {n} completed trials (under {ROUGH_BELOW})", loc="left")
    return fig


INACTIVE = -0.16  # where a trial that did not use a conditional parameter meets its axis: below the range
AXIS_INCHES = 1.3  # between two axes: room for a wrapped name such as "loss.\nlabel_smoothing" at 9 pt
MIN_TICK_GAP = 0.09  # of an axis's height: closer tick labels would touch
LABEL_BOX = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}


@dataclass
class _Axis:
    """One vertical axis of the parallel-coordinates figure: each trial's height on it (0 bottom, 1 top,
    INACTIVE where the trial did not use the parameter) and its labelled ticks."""

    name: str
    heights: list[float]
    ticks: list[tuple[float, str]]


def _scale(lo: float, hi: float, log: bool):
    """Value to height in [0, 1] between lo and hi, on a log scale where the distribution is."""
    if hi <= lo:
        return lambda v: 0.5
    if log:
        a, b = math.log(lo), math.log(hi)
        return lambda v: (math.log(v) - a) / (b - a)
    return lambda v: (v - lo) / (hi - lo)


def _tick_values(lo: float, hi: float, log: bool, integer: bool) -> list[float]:
    if hi <= lo:
        return [lo]
    if log:  # the range's ends and the decades inside it, at most 5
        decades = [10.0 ** k for k in range(math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9) + 1)]
        return [lo, *decades[::max(1, math.ceil(len(decades) / 5))], hi]  # _thin drops an end too near a decade
    span = hi - lo
    return [v for v in MaxNLocator(nbins=4, integer=integer).tick_values(lo, hi)
            if lo - 1e-9 * span <= v <= hi + 1e-9 * span]


def _thin(ticks: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """Drop any tick whose label would touch the one below it."""
    kept: list[tuple[float, str]] = []
    for height, label in sorted(ticks):
        if not kept or height - kept[-1][0] >= MIN_TICK_GAP:
            kept.append((height, label))
    return kept


def _short(value) -> str:
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 12 else text[:11] + "…"


def _param_axis(name: str, trials: list[FrozenTrial]) -> _Axis:
    dists: list[BaseDistribution] = [t.distributions[name] for t in trials if name in t.params]
    if isinstance(dists[0], CategoricalDistribution):  # its choices, evenly spaced, in the study's order
        choices = list(dict.fromkeys(c for d in dists for c in d.choices))
        height = {c: (i + 0.5) / len(choices) for i, c in enumerate(choices)}
        ticks = [(height[c], _short(c)) for c in choices]
        at = height.__getitem__
    else:  # the whole search range, so the figure shows where the sampler went within it
        values = [t.params[name] for t in trials if name in t.params]
        lo, hi = min([d.low for d in dists] + values), max([d.high for d in dists] + values)
        log = lo > 0 and any(getattr(d, "log", False) for d in dists)
        at = _scale(lo, hi, log)
        ticks = [(at(v), _short(float(v))) for v in _tick_values(lo, hi, log, isinstance(dists[0], IntDistribution))]
    return _Axis(name, [at(t.params[name]) if name in t.params else INACTIVE for t in trials], _thin(ticks))


def _metric_axis(trials: list[FrozenTrial]) -> _Axis:
    values = [t.value for t in trials]
    lo, hi = min(values), max(values)
    at = _scale(lo, hi, False)
    return _Axis(METRIC, [at(v) for v in values], _thin([(at(v), _short(float(v))) for v in
                                                         _tick_values(lo, hi, False, False)]))


def _draw_axis(ax, x: int, axis: _Axis) -> None:
    """The axis line, its ticks labelled on its left, its name above it broken at the dots, and the inactive
    mark where some trial did not use the parameter."""
    ax.plot([x, x], [0.0, 1.0], color="#212121", lw=1.0, zorder=4)
    label = {"ha": "right", "va": "center", "fontsize": 8, "zorder": 5, "bbox": LABEL_BOX}
    for height, text in axis.ticks:
        ax.plot([x - 0.025, x], [height, height], color="#212121", lw=1.0, zorder=4)
        ax.text(x - 0.04, height, text, **label)
    if INACTIVE in axis.heights:
        ax.plot([x], [INACTIVE], marker="o", ms=4, color="#616161", zorder=4)
        ax.text(x - 0.04, INACTIVE, "inactive", color="#616161", style="italic", **label)
    ax.annotate(axis.name.replace(".", ".\n"), (x, 1.0), xytext=(0, 8), textcoords="offset points", ha="center",
                va="bottom", fontsize=9, annotation_clip=False)


def parallel_coordinates(view: StudyView) -> Figure:
    """One line per completed trial through its parameters, then its macro_f1 on the last axis."""
    view.need_completed(2, "parallel coordinates")
    trials = view.worst_first(view.completed)
    axes = [_param_axis(name, trials) for name in view.params] + [_metric_axis(trials)]
    width = max(6.5, AXIS_INCHES * (len(axes) + 0.4))  # a few axes still leave the title room
    fig = _new_figure(width, 4.8)
    ax = fig.add_axes((0.0, 0.1 / 4.8, 1.0, 1.0 - 1.0 / 4.8))  # 0.9 in above: the title and two-line names
    ax.set_axis_off()
    ax.set_autoscale_on(False)
    # left: room for the first axis's tick labels; right of the last axis, the best trial's label
    ax.set_xlim(-0.55, width / AXIS_INCHES - 0.55)
    ax.set_ylim(INACTIVE - 0.06, 1.03)
    colors = RANK_COLORS(np.linspace(0.0, 1.0, len(trials)))
    lines = [list(enumerate(a.heights[i] for a in axes)) for i in range(len(trials))]
    thin = len(trials) > 40
    ax.add_collection(LineCollection(lines[:-1], colors=colors[:-1], linewidths=0.9 if thin else 1.4,
                                     alpha=0.6 if thin else 0.85, zorder=2, gid="trials"))
    xs, ys = zip(*lines[-1])
    ax.plot(xs, ys, color=colors[-1], lw=2.6, zorder=3, gid="best",
            path_effects=[patheffects.withStroke(linewidth=4.6, foreground=BEST_COLOR)])
    # right of the last axis and just below the best's end (the top of it), clear of the axis name above
    ax.annotate(f"best: trial {trials[-1].number}\n{trials[-1].value:.4f}", (xs[-1], ys[-1]), xytext=(8, -4),
                textcoords="offset points", ha="left", va="top", fontsize=8.5, fontweight="bold", zorder=5)
    for x, axis in enumerate(axes):
        _draw_axis(ax, x, axis)
    fig.text(0.5 / width * AXIS_INCHES, 1.0 - 0.08 / 4.8, f"{len(trials)} completed trials; colour: {METRIC} rank, "
             "dark purple worst to green best", ha="left", va="top", fontsize=10)
    return fig


def slices(view: StudyView) -> Figure:
    """The most important parameters; without a ranking (a single parameter), the first few."""
    view.need_completed(2, "slice plots")
    try:
        names = list(view.importances)[:SLICE_PARAMS]
    except LeftOut:
        names = view.params[:SLICE_PARAMS]
    if not names:
        raise LeftOut("slice plots: the study searches no parameter")
    fig = _quietly(optuna_plots.plot_slice, view.study, params=names, target_name=METRIC)
    fig.set_size_inches(4.0 * len(names), 4.0)
    for ax in fig.axes:  # Optuna colours by trial number with a map that fades to white: early trials vanish
        for points in ax.collections:
            points.set_cmap(SLICE_CMAP)
            if isinstance(points, PathCollection):  # the scatter, not the colorbar's mesh
                points.set_edgecolor("#424242")
    return fig


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
    fig = _new_figure(7.5, 4.6)
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
    step = "fold" if view.cross_validated else "epoch"  # what a step is (search/trial_reports.py)
    ax.set_ylabel(f"{METRIC} reported" + (f"\n(▼ {clipped} of {len(values)} reports below {floor:.3g} not shown)"
                                          if clipped else ""))
    ax.set_xlabel(step)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.set_title(f"what the pruner saw: each trial's {METRIC} per {step}", loc="left", fontsize=10)
    _intermediate_legend(ax, reported, best)
    fig.tight_layout()
    return fig


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
    fig = _new_figure(8.0, 5.4, layout="constrained")  # it makes room for the legend below the chart
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
