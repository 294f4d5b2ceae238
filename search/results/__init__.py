"""What a study holds, read back: its status, the best trial exported as a training config, and ensembles of
its top trials, and soups of them (their weights averaged). The order of trials itself is ``search.ranking``.
"""

from search.results._ensemble import ensemble, top_run_folders
from search.results._export import best_trial, export_best
from search.results._soup import soup
from search.results._status import study_status

__all__ = ["top_run_folders", "ensemble", "best_trial", "export_best", "study_status", "soup"]
