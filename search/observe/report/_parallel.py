"""Parallel coordinates, drawn by us where Optuna's hid their point: whole axis names, ticks that never touch, log
axes for log parameters, an "inactive" mark for a conditional parameter a trial did not use, and a colour map
without white (the worst trials stay visible) with the best trial on top, outlined and labelled."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib import patheffects
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial

from search.observe.report._view import BEST_COLOR, RANK_COLORS, StudyView, new_figure
from search.ranking import METRIC

__all__ = ["parallel_coordinates"]

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
    fig = new_figure(width, 4.8)
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
