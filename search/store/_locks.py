"""The study store's cross-process locks: a study's lock (an flock on a file beside SQLite; on Postgres an
advisory lock, queued behind a local file lock) and the schema lock's advisory lock, on connections of their own."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import tempfile
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.pool
from sqlalchemy import text

from training.files import file_lock, file_lock_if_possible

__all__ = ["study_lock", "advisory_lock", "lock_engine"]


@contextlib.contextmanager
def study_lock(storage: optuna.storages.RDBStorage, url: str, study_name: str):
    """One study's lock across processes and machines: its holder alone fails stale trials, tops up the budget,
    claims a trial, re-queues one, or changes the kept checkpoints."""
    if url.startswith("sqlite:///"):
        with file_lock(Path(url.removeprefix("sqlite:///")).expanduser().resolve().with_suffix(".lock")):
            yield
    elif url.startswith("postgresql"):
        key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
        # Workers on this machine queue on a local file first, holding no connection while they wait: 64
        # workers that finish together would otherwise hold 64 more connections, each blocked in
        # pg_advisory_lock. Only the one holding the local lock opens a short-lived second connection (never
        # the storage's pooled one, which the heartbeat thread shares) for the advisory lock across machines.
        tag = hashlib.sha1(f"{url}|{study_name}".encode()).hexdigest()[:16]
        local = Path(tempfile.gettempdir()) / f"imgsearch-study-{tag}.lock"
        with file_lock_if_possible(local), lock_engine(url).connect() as conn, advisory_lock(conn, key):
            yield
    else:
        yield  # other databases: Optuna's row locks still make claims unique; top-ups may overshoot


@functools.cache
def lock_engine(url: str) -> sqlalchemy.engine.Engine:
    """The locks' own engine: no pool, so a lock's connection exists only while the lock is held (never the
    storage's pooled one, which the heartbeat thread shares)."""
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": 10})


@contextlib.contextmanager
def advisory_lock(conn, key: int):
    """A session-level Postgres advisory lock held on ``conn`` (a SQLAlchemy connection) for the block."""
    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
    try:
        yield
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        conn.commit()
