"""What the report's figures share: the study read once (:class:`StudyView`), the reason a figure is left out
(:class:`LeftOut`), the device-hour each trial counts in, and the colours of trial states and of the best."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

import matplotlib

matplotlib.use("Agg")  # files only, never a window: the report runs on headless servers

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from optuna.trial import FrozenTrial  # noqa: E402

from search.ranking import METRIC, completed, ranked  # noqa: E402
from training.runtime import recorded_kind  # noqa: E402

__all__ = ["LeftOut", "StudyView", "device_kind", "hour_unit", "hours", "new_figure", "figure_of", "quietly",
           "STATE_COLORS", "BEST_COLOR", "RANK_COLORS", "ROUGH_BELOW"]

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
        return completed(self.trials)

    @cached_property
    def best(self) -> FrozenTrial | None:
        """The best completed trial (the first of equals, as ``study.best_trial`` picks it)."""
        return self.worst_first(self.completed)[-1] if self.completed else None

    def worst_first(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """Completed trials from the worst value to the best (of equals, the earliest last): drawn in this order,
        better lines lie over worse ones."""
        return ranked(trials)[::-1]

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
    if kind := recorded_kind(trial.user_attrs.get("device_kind"), trial.user_attrs.get("device")):
        return kind
    configured = str(((trial.user_attrs.get("config") or {}).get("train") or {}).get("device", "auto"))
    return "CPU" if configured == "cpu" else "GPU" if configured.startswith("cuda") else "device"


def hour_unit(trials: list[FrozenTrial]) -> str:
    kinds = {device_kind(t) for t in trials}
    return f"{kinds.pop()}-hour" if len(kinds) == 1 else "device-hour"


def hours(trial: FrozenTrial) -> float:
    return trial.duration.total_seconds() / 3600.0 if trial.duration is not None else 0.0


def new_figure(width: float, height: float, layout: str | None = None) -> Figure:
    """A Figure on its own Agg canvas (no pyplot state): it can be drawn, measured and saved."""
    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def figure_of(axes) -> Figure:
    """Optuna's plots return one Axes, or an array of them (slices): the figure they share."""
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure


def quietly(plot, *args, **kwargs) -> Figure:
    # a parameter that every plotted trial shares gives an axis with equal limits; matplotlib widens it and
    # warns, which would be a stray line on the command's stderr
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Attempting to set identical")
        return figure_of(plot(*args, **kwargs))
