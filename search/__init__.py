"""Hyperparameter search for image classification on Optuna: studies, workers, pruning, W&B, export."""

import warnings

import optuna

# heartbeats, multivariate/group TPE and the retry callback are marked experimental; we rely on them knowingly
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

from search.errors import BudgetError, SearchError, StorageError, StudyConfigError  # noqa: E402  (after the filter)
from search.study import StudyConfig, load_study  # noqa: E402

__all__ = ["StudyConfig", "load_study", "SearchError", "StudyConfigError", "StorageError", "BudgetError"]
