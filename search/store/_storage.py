"""The study store: Optuna's own RDBStorage (SQLite embedded by default, Postgres for parallel work).

Passwords never leave this module in clear: :func:`redact` is applied to every URL we print.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import time
from pathlib import Path

import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.storages import RDBStorage

try:  # optuna >= 4.9 renamed it
    from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryCallback
except ImportError:  # pragma: no cover
    from optuna.storages import RetryFailedTrialCallback as RetryCallback

from search.errors import StorageError
from search.store._locks import advisory_lock, lock_engine
from training.errors import one_line
from training.files import file_lock_if_possible

__all__ = ["DEFAULT_STORAGE", "resolve_url", "redact", "open_storage", "RetryCallback"]

DEFAULT_STORAGE = "sqlite:///studies.db"
_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2", "mysql", "mysql+pymysql")


def resolve_url(url: str | None) -> str:
    """--storage, else $SEARCH_STORAGE, else the embedded SQLite file in the working directory."""
    return url or os.environ.get("SEARCH_STORAGE") or DEFAULT_STORAGE


def redact(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _check(url: str) -> None:
    m = re.match(r"^([a-z0-9+]+)://", url)
    if not m:
        raise StorageError(f"storage URL '{redact(url)}' is malformed; use sqlite:///file.db or "
                           "postgresql://user:pass@host:5432/db")
    if m.group(1) == "postgres":
        raise StorageError(f"storage URL '{redact(url)}': write postgresql:// (SQLAlchemy does not know postgres://)")
    if m.group(1) not in _SCHEMES:
        raise StorageError(f"storage URL scheme '{m.group(1)}' is not supported; use one of {', '.join(_SCHEMES)}")
    if url.startswith("sqlite:///"):
        file = Path(url.removeprefix("sqlite:///")).expanduser()
        if file.is_dir():
            raise StorageError(f"storage URL '{url}': '{file}' is a folder; name the database file in it, such as "
                               f"sqlite:///{file / 'studies.db'}")
        folder = file.resolve().parent
        if not folder.is_dir():
            raise StorageError(f"storage URL '{url}': folder '{folder}' does not exist; create it or change --storage")


def open_storage(url: str, heartbeat_seconds: int | None = None, max_retries: int = 3,
                 must_exist: bool = False) -> RDBStorage:
    """An RDBStorage with a bounded connection pool, pre-ping (survives a database restart) and heartbeats.
    ``must_exist``: for read-only commands, a missing SQLite file is an error (not a new empty store)."""
    _check(url)
    if must_exist and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).expanduser().is_file():
        raise StorageError(f"no study store at '{url}'; run `search run --study NAME` here first, or pass --storage")
    engine_kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # parallel workers on one file: wait on a lock instead of failing with "database is locked"
        engine_kwargs["connect_args"] = {"timeout": 120}
    else:
        # one pooled connection per worker, shared by its main and heartbeat threads (each holds it for one short
        # transaction). The overflow of one is closed as soon as it is returned: Optuna's own set-up nests two
        # sessions, and a heartbeat that coincides with a report opens it for that moment. The study lock opens
        # its own connection only while held (study_lock, in _locks.py). So 64 workers stay under Postgres'
        # default max_connections (100); beyond that, see docs/workers.md (pgbouncer)
        engine_kwargs.update(pool_size=1, max_overflow=1, pool_recycle=600, pool_timeout=120,
                             connect_args={"connect_timeout": 10})
    kwargs: dict = {}
    if heartbeat_seconds:
        # SQLite's CURRENT_TIMESTAMP, which Optuna uses for both the beat and the check, has whole seconds: one
        # more second keeps a healthy trial with a short interval from going stale by truncation alone
        grace = 3 * heartbeat_seconds + (1 if url.startswith("sqlite") else 0)
        kwargs = dict(heartbeat_interval=heartbeat_seconds, grace_period=grace,
                      heartbeat_stale_trial_callback=RetryCallback(max_retry=max_retries,
                                                                   inherit_intermediate_values=True))
    try:
        # a store that must exist has its schema already: no lock (and no lock file beside it) to read it
        with contextlib.nullcontext() if must_exist else _schema_lock(url):
            return _create(url, engine_kwargs, kwargs)
    except StorageError:
        raise
    except Exception as e:  # the lock's own connection included: one redacted line, never a traceback
        _raise_open_error(url, e)


def _create(url: str, engine_kwargs: dict, kwargs: dict) -> RDBStorage:
    for attempt in range(6):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, skip_compatibility_check=False, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError) as e:
            # workers creating the schema of a new store at once (no lock for other databases): one wins, the
            # others retry
            if attempt == 5 or not _is_create_race(e):
                raise
            gc.collect()  # the failed attempt's engine sits in reference cycles: close its connections now
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _is_create_race(e: Exception) -> bool:
    """Another worker created the same table/index/row between our check and our CREATE/INSERT."""
    return isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)


_SCHEMA_LOCK_KEY = 0x5345_4152_4348_0001  # "SEARCH" 0001


@contextlib.contextmanager
def _schema_lock(url: str):
    """One process at a time creates/upgrades the schema of a new store: workers started together raced on
    Optuna's check-then-CREATE (SQLite: "table ... already exists"; Postgres: a lost race leaves the loser's
    half-built engine and its connections open until garbage collection). No lock where none can be had (a
    read-only folder for `status`; a server that is down, which opening the storage then reports)."""
    with contextlib.ExitStack() as stack:
        if url.startswith("sqlite:///") and ":memory:" not in url:
            path = Path(url.removeprefix("sqlite:///")).expanduser().resolve().with_suffix(".schema.lock")
            stack.enter_context(file_lock_if_possible(path))
        elif url.startswith("postgresql"):  # on its own short-lived connection, not the storage's pool
            try:
                stack.enter_context(advisory_lock(stack.enter_context(lock_engine(url).connect()), _SCHEMA_LOCK_KEY))
            except sqlalchemy.exc.SQLAlchemyError:
                pass
        yield


def _raise_open_error(url: str, e: Exception) -> None:
    """Driver errors carry the URL, password included: never print them raw."""
    raise StorageError(f"cannot open storage '{redact(url)}': {redact(one_line(e))}; "
                       "check the URL and that the database server is running") from None
