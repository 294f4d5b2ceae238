"""Survive a database outage: wait and retry store operations with backoff, saying so in the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy.exc

from search.errors import StorageError

__all__ = ["with_store_retry", "TRANSIENT"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# connection refused / reset / server restarting / admin shutdown: all surface as these
TRANSIENT = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError)


def _transient(e: BaseException) -> bool:
    if isinstance(e, TRANSIENT):
        return True
    if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
        return True
    cause = e.__cause__ or e.__context__
    return cause is not None and cause is not e and _transient(cause)


def with_store_retry(fn: Callable[[], T], what: str, max_wait: float = 600.0) -> T:
    """Run ``fn``; on a lost database connection wait 1, 2, 4 ... 30 s and retry, up to ``max_wait`` seconds."""
    waited, delay = 0.0, 1.0
    while True:
        try:
            return fn()
        except Exception as e:
            if not _transient(e):
                raise
            if waited >= max_wait:
                raise StorageError(f"the study store was unreachable for {waited:.0f}s while trying to {what}; "
                                   "check the database server, then rerun the worker") from None
            log.warning("storage unreachable while trying to %s (%s); waiting %.0fs and reconnecting",
                        what, type(e).__name__, delay)
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, 30.0)
