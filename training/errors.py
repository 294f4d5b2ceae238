"""One exception family for everything a user can get wrong in training.

The CLI catches :class:`TrainingError` (and ``search``'s subclasses) and prints one line.
"""

__all__ = ["TrainingError", "ConfigError", "DataError", "NonFiniteLoss", "one_line"]


class TrainingError(Exception):
    """Base for errors a user can cause and fix; the message is one line that says how."""


class ConfigError(TrainingError):
    """A config file or value is invalid."""


class DataError(TrainingError):
    """A dataset is missing, empty, malformed or holds unreadable images."""


class NonFiniteLoss(TrainingError):
    """The training loss became NaN or infinite (lr too high, fp16 overflow, bad data)."""


def one_line(e: BaseException, limit: int = 400, with_type: bool = True, with_last: bool = False) -> str:
    """An exception as one line, for a message or a trial's fail reason: its first line after ``Type: ``
    (``with_type``), at most ``limit`` characters. ``with_last``: also its last line, for errors that wrap the
    one that matters at their end (a DataLoader worker's traceback, a trial's crash)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if with_last and len(lines) > 1:
        text += f" ({lines[-1]})"
    if not with_type:
        return (text or e.__class__.__name__)[:limit]
    return f"{e.__class__.__name__}: {text}"[:limit] if text else e.__class__.__name__
