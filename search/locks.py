"""The two cross-process locks the search uses: an flock on a file beside SQLite, an advisory lock on Postgres."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path

from sqlalchemy import text

__all__ = ["file_lock", "file_lock_if_possible", "advisory_lock"]


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive flock on ``path``, created if missing; a lock file someone else created is opened read-only
    (flock works on a read-only descriptor). Raises OSError when the file can be neither created nor read."""
    try:
        fh = open(path, "a")
    except OSError:
        fh = open(path)
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def file_lock_if_possible(path: Path):
    """``file_lock``, or none where no lock file can be made (a read-only or full folder): yields whether the
    lock is held, for callers whose work is still right unserialized, only less economical."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path))
            held = True
        except OSError:
            held = False
        yield held


@contextlib.contextmanager
def advisory_lock(conn, key: int):
    """A session-level Postgres advisory lock held on ``conn`` (a SQLAlchemy connection) for the block."""
    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
    try:
        yield
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        conn.commit()
