"""Workers started at once on a new, empty store all open it: the schema is created once, nobody crashes
(CI once saw three SQLite workers race on CREATE TABLE and one exit with 'table ... already exists')."""

from __future__ import annotations

import subprocess
import sys
import time

OPEN = """
import sys, time
from pathlib import Path
from search.storage import open_storage
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
