"""Workers started at once on a new, empty store all open it: the schema is created once, nobody crashes
(CI once saw three SQLite workers race on CREATE TABLE and one exit with 'table ... already exists')."""

from __future__ import annotations

import subprocess
import sys
import time

OPEN = """
import sys, time
from pathlib import Path
from search.store import open_storage
Path(sys.argv[2] + "." + sys.argv[3]).touch()
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.002)
open_storage(sys.argv[1])
"""


def test_many_workers_create_a_new_store_at_once(storage_url, tmp_path):
    go, n = tmp_path / "go", 6
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, storage_url, str(go), str(i)], stderr=subprocess.PIPE,
                              text=True) for i in range(n)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*"))) < n and time.monotonic() < deadline:  # all imported, all waiting
        time.sleep(0.05)
    go.touch()
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0] * n, [err for _, err in results if err]


def test_a_store_in_a_read_only_folder_still_opens(tmp_path, monkeypatch):
    """`status` / `best` on someone else's store: the schema lock file cannot be created there; reading works."""
    import builtins

    from search.store import open_storage

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    open_storage(url).engine.dispose()  # the store exists
    real_open = builtins.open

    def no_lock_files(path, *a, **k):
        if str(path).endswith(".schema.lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", no_lock_files)
    storage = open_storage(url, must_exist=True)
    assert storage.get_all_studies() == []
    storage.engine.dispose()


def test_heartbeat_grace_covers_the_store_clock(storage_url):
    """Optuna stamps and checks heartbeats with the database's now(). SQLite's has whole seconds, so a beat can
    look up to 1 s older than it is: the grace gets that second on top of 3 heartbeat intervals."""
    import sqlalchemy

    from search.store import open_storage

    st = open_storage(storage_url, heartbeat_seconds=1)
    try:
        with st.engine.connect() as c:
            stamps = [c.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar() for _ in range(3)]
        whole_seconds = all(t.microsecond == 0 for t in stamps)
        assert whole_seconds == storage_url.startswith("sqlite")
        assert st.grace_period == (4 if whole_seconds else 3)
    finally:
        st.engine.dispose()
