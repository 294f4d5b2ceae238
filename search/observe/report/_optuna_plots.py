"""The figures Optuna draws well enough (``optuna.visualization.matplotlib``): the optimization history, the
parameter importances (marked rough when few trials back them) and slices of the most important parameters (in a
colour map without white, so early trials stay visible)."""

from __future__ import annotations

from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.visualization import matplotlib as optuna_plots

from search.observe.report._view import ROUGH_BELOW, LeftOut, StudyView, quietly
from search.ranking import METRIC

__all__ = ["history", "importances", "slices"]

SLICE_PARAMS = 3  # slice plots of this many of the most important parameters
SLICE_CMAP = "viridis"  # trial number: dark early, yellow late; never white


def history(view: StudyView) -> Figure:
    view.need_completed(1, "optimization history")
    fig = quietly(optuna_plots.plot_optimization_history, view.study, target_name=METRIC)
    fig.axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def importances(view: StudyView) -> Figure:
    if not view.importances:  # raises LeftOut when the study cannot rank its parameters
        raise LeftOut("parameter importances: Optuna's evaluator ranked no parameter")
    fig = quietly(optuna_plots.plot_param_importances, view.study, target_name=METRIC)
    n = len(view.completed)
    if n < ROUGH_BELOW:  # the bars' two decimals look precise; say on the figure itself what they rest on
        fig.axes[0].set_title(f"Importances, rough: from {n} completed trials (under {ROUGH_BELOW})", loc="left")
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
    fig = quietly(optuna_plots.plot_slice, view.study, params=names, target_name=METRIC)
    fig.set_size_inches(4.0 * len(names), 4.0)
    for ax in fig.axes:  # Optuna colours by trial number with a map that fades to white: early trials vanish
        for points in ax.collections:
            points.set_cmap(SLICE_CMAP)
            if isinstance(points, PathCollection):  # the scatter, not the colorbar's mesh
                points.set_edgecolor("#424242")
    return fig
