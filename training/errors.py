"""One exception family for everything a user can get wrong in training.

The CLI catches :class:`TrainingError` (and ``search``'s subclasses) and prints one line.
"""

__all__ = ["TrainingError", "ConfigError", "DataError", "NonFiniteLoss"]


class TrainingError(Exception):
    """Base for errors a user can cause and fix; the message is one line that says how."""


class ConfigError(TrainingError):
    """A config file or value is invalid."""


class DataError(TrainingError):
    """A dataset is missing, empty, malformed or holds unreadable images."""


class NonFiniteLoss(TrainingError):
    """The training loss became NaN or infinite (lr too high, fp16 overflow, bad data)."""
