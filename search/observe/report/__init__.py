"""``search report``: one offline HTML page of a study, with a PNG per figure and a sentence under each saying
what it shows.

The page (``_page``) lists the study-wide figures in order (``_findings``: each one's caption and finding), then
the best trial's per-class F1, confusion matrix and curves (``_best_trial``). The figures: Optuna's own where they
make their point (``_optuna_plots``), ours where Optuna's hid it (``_parallel``, ``_pruning``, ``_cost``); what they
share is ``_view``.
"""

from search.observe.report._best_trial import BestRun, read_best_run
from search.observe.report._cost import f1_per_hour, per_hour, rate_leaders, rate_text, time_per_trial, time_scale
from search.observe.report._findings import STUDY_FIGURES
from search.observe.report._optuna_plots import history, importances, slices
from search.observe.report._page import Report, Section, write_report
from search.observe.report._parallel import parallel_coordinates
from search.observe.report._pruning import intermediate_values
from search.observe.report._view import (
    BEST_COLOR,
    RANK_COLORS,
    ROUGH_BELOW,
    STATE_COLORS,
    LeftOut,
    StudyView,
    device_kind,
    hour_unit,
    hours,
)

__all__ = ["write_report", "Report", "Section", "StudyView", "LeftOut", "BestRun", "read_best_run", "STUDY_FIGURES",
           "history", "importances", "slices", "parallel_coordinates", "intermediate_values", "time_per_trial",
           "f1_per_hour", "per_hour", "rate_text", "rate_leaders", "time_scale", "device_kind", "hour_unit", "hours",
           "STATE_COLORS", "BEST_COLOR", "RANK_COLORS", "ROUGH_BELOW"]
