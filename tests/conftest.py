"""Shared fixtures: an isolated decode cache, W&B offline, and one storage fixture run against SQLite and the
real Postgres on 127.0.0.1:5432 (a fresh database per test session)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# test helpers (imagegen, studygen, clitools, wandb_records) import by name; appended, so that test folders
# never shadow the real `training` / `search` packages (tests run with --import-mode=importlib)
sys.path.append(str(Path(__file__).resolve().parent))
PG_ADMIN = os.environ.get("SEARCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory):
    os.environ["SEARCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("decode-cache"))
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ.pop("WANDB_API_KEY", None)
    os.environ.pop("SEARCH_STORAGE", None)
    os.environ.setdefault("SEARCH_NUM_THREADS", "1")
    yield


@pytest.fixture(autouse=True)
def _no_shared_wandb_service():
    """A test that runs W&B in this process starts a W&B service and names it in WANDB_SERVICE, which every later
    subprocess would inherit and log its runs through, a service that the test's end leaves half torn down
    (a later test's workers then wrote no run files). Each test's W&B stays its own."""
    yield
    if "WANDB_SERVICE" in os.environ:
        import wandb

        wandb.teardown()
        os.environ.pop("WANDB_SERVICE", None)


def _pg_admin():
    import sqlalchemy

    eng = sqlalchemy.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", pool_pre_ping=True,
                                   connect_args={"connect_timeout": 3})
    with eng.connect() as c:
        c.execute(sqlalchemy.text("SELECT 1"))
    return eng


@pytest.fixture(scope="session")
def pg_server():
    """The admin engine of the real Postgres; skipped without one, except under CI=true where it must run."""
    try:
        return _pg_admin()
    except Exception as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Postgres at {PG_ADMIN} is unreachable: {e}")
        pytest.skip(f"no Postgres at {PG_ADMIN}: {type(e).__name__}")


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty Postgres database for one test; dropped afterwards."""
    import sqlalchemy

    name = f"search_test_{uuid.uuid4().hex[:12]}"
    with pg_server.connect() as c:
        c.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with pg_server.connect() as c:
        c.execute(sqlalchemy.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
        c.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request, tmp_path):
    """One suite, every backend: SQLite in a temp folder and a fresh database on the real Postgres."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return request.getfixturevalue("pg_url")
