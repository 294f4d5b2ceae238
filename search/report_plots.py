"""The study-wide figures of ``search report``: Optuna's own plots (``optuna.visualization.matplotlib``) where
the study holds enough for them, and ours of trial states, time per trial and macro-F1 per device-hour.

Each figure function takes a :class:`StudyView` and returns a matplotlib Figure, or raises :class:`LeftOut`
with the reason the study cannot support it yet (the page prints that line instead of the image).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

import matplotlib

matplotlib.use("Agg")  # files only, never a window: the report runs on headless servers

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import optuna  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

__all__ = ["LeftOut", "StudyView", "device_kind", "hour_unit", "STATE_COLORS", "history", "importances",
           "parallel_coordinates", "slices", "intermediate_values", "trial_states", "time_per_trial",
           "f1_per_hour"]

METRIC = "macro_f1"
SLICE_PARAMS = 3  # slice plots of this many of the most important parameters
STATE_COLORS = {"COMPLETE": "#2e7d32", "PRUNED": "#ef6c00", "FAIL": "#c62828", "RUNNING": "#1565c0",
                "WAITING": "#9e9e9e"}


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
    return _quietly(optuna_plots.plot_param_importances, view.study, target_name=METRIC)


def parallel_coordinates(view: StudyView) -> Figure:
    view.need_completed(2, "parallel coordinates")
    fig = _quietly(optuna_plots.plot_parallel_coordinate, view.study, target_name=METRIC)
    fig.set_size_inches(max(6.0, 1.6 * (len(view.params) + 1)), 4.5)
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
    return fig


def intermediate_values(view: StudyView) -> Figure:
    if not any(t.intermediate_values for t in view.trials):
        raise LeftOut("intermediate values: no trial reported one, so a pruner had nothing to judge")
    fig = _quietly(optuna_plots.plot_intermediate_values, view.study)
    ax = fig.axes[0]
    ax.set_ylabel(f"{METRIC} reported")
    ax.set_xlabel("fold" if view.cross_validated else "epoch")  # what a step is (search/trial_reports.py)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def trial_states(view: StudyView) -> Figure:
    counts: dict[str, int] = {}
    for t in view.trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    if not counts:
        raise LeftOut("trial counts by state: the study holds no trial yet")
    states = [s for s in STATE_COLORS if s in counts] + sorted(set(counts) - set(STATE_COLORS))
    fig, ax = plt.subplots(figsize=(6.0, 0.5 * len(states) + 1.2))
    bars = ax.barh(states, [counts[s] for s in states], color=[STATE_COLORS.get(s, "#616161") for s in states])
    ax.bar_label(bars, padding=3)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trials")
    ax.set_title(f"{len(view.trials)} trials by state", loc="left")
    fig.tight_layout()
    return fig


def _time_scale(seconds: list[float]) -> tuple[float, str]:
    longest = max(seconds)
    return (3600.0, "hours") if longest >= 3 * 3600 else (60.0, "minutes") if longest >= 180 else (1.0, "seconds")


def time_per_trial(view: StudyView) -> Figure:
    if not view.timed:
        raise LeftOut("time per trial: no trial has finished yet")
    seconds = [t.duration.total_seconds() for t in view.timed]
    scale, unit = _time_scale(seconds)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(view.timed) + 2), 3.8))
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


def f1_per_hour(view: StudyView) -> Figure:
    done = [t for t in view.completed if t.duration is not None and t.duration.total_seconds() > 0]
    if not done:
        raise LeftOut(f"{METRIC} per device-hour: no completed trial has a measured duration")
    unit = hour_unit(view.timed)  # the same unit as the time figure's
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(done) + 2), 3.8))
    ax.bar([t.number for t in done], [t.value / (t.duration.total_seconds() / 3600.0) for t in done],
           color=STATE_COLORS["COMPLETE"])
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{METRIC} per {unit}")
    ax.set_title(f"{METRIC} per {unit} of each completed trial", loc="left")
    fig.tight_layout()
    return fig
