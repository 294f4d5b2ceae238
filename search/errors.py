"""Errors of the search layer; all are :class:`training.TrainingError`, so the CLI catches one base."""

from training.errors import TrainingError

__all__ = ["SearchError", "StudyConfigError", "StorageError", "BudgetError"]


class SearchError(TrainingError):
    """Base for search-layer errors a user can fix."""


class StudyConfigError(SearchError):
    """A study file is invalid."""


class StorageError(SearchError):
    """The study store is unreachable, malformed, or holds a clashing study."""


class BudgetError(SearchError):
    """Too many trials failed to reach the study's budget."""
