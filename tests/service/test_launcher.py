"""`search run`'s supervision of its local workers: a worker killed by a signal is replaced (at most
RESTARTS_PER_WORKER times), one that stops with an error of its own is not (a new one would stop the same way).
Workers are stand-in processes here; tests/service/test_reliability.py kills a real one mid-trial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from search import launcher

SCRIPT = """
import os, signal, sys
from pathlib import Path
marks = Path(sys.argv[1])
n = len(list(marks.glob("start.*")))
(marks / f"start.{n}").touch()
plan = sys.argv[2].split(",")
what = plan[min(n, len(plan) - 1)]
if what == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(int(what))
"""


def _run(tmp_path: Path, monkeypatch, plan: str) -> tuple[int, int]:
    """One worker slot whose successive processes do what ``plan`` says: 'kill' (SIGKILL itself) or an exit
    code. Returns (run's code, processes started)."""
    monkeypatch.setattr(launcher, "_worker_process",
                        lambda *a: subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), plan]))
    code = launcher._spawn(None, "sqlite:///x.db", 1, 1, tmp_path, False, None, 1)
    return code, len(list(tmp_path.glob("start.*")))


def test_a_killed_worker_is_replaced(tmp_path, monkeypatch, capsys):
    assert _run(tmp_path, monkeypatch, "kill,kill,0") == (0, 3)
    assert "worker 0 was killed (SIGKILL); starting a new one in its place (restart 2/3)" in capsys.readouterr().out


def test_a_worker_killed_again_and_again_is_given_up(tmp_path, monkeypatch):
    assert _run(tmp_path, monkeypatch, "kill") == (-9, 1 + launcher.RESTARTS_PER_WORKER)


def test_a_worker_that_stops_with_its_own_error_is_not_replaced(tmp_path, monkeypatch, capsys):
    assert _run(tmp_path, monkeypatch, "1,0") == (1, 1)
    assert "starting a new one" not in capsys.readouterr().out
