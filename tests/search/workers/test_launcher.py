"""`search run`'s supervision of its local workers: a worker killed by a signal is replaced (at most
RESTARTS_PER_WORKER times), one that stops with an error of its own is not (a new one would stop the same way).
Workers are stand-in processes here; tests/search/store/test_reliability.py kills a real one mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from search import load_study
from search.store import open_storage
from search.workers import WorkerStopped, _launcher as launcher, open_study
from studygen import write_study

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
if what == "sleep":  # a worker with a long study ahead
    import time
    time.sleep(60)
    sys.exit(0)
sys.exit(int(what))
"""


def _run(tmp_path: Path, monkeypatch, plan: str) -> tuple[int, int]:
    """One worker slot whose successive processes do what ``plan`` says: 'kill' (SIGKILL itself) or an exit
    code. Returns (run's code, processes started)."""
    monkeypatch.setattr(launcher, "_worker_process",
                        lambda *a: subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), plan]))
    [code] = launcher._spawn(None, "sqlite:///x.db", 1, 1, tmp_path, False, None, 1)
    return code, len(list(tmp_path.glob("start.*")))


def test_a_killed_worker_is_replaced(tmp_path, monkeypatch, capsys):
    assert _run(tmp_path, monkeypatch, "kill,kill,0") == (0, 3)
    assert "worker 0 was killed (SIGKILL); starting a new one in its place (restart 2/3)" in capsys.readouterr().out


def test_a_worker_killed_again_and_again_is_given_up(tmp_path, monkeypatch):
    assert _run(tmp_path, monkeypatch, "kill") == (-9, 1 + launcher.RESTARTS_PER_WORKER)


def test_a_worker_that_stops_with_its_own_error_is_not_replaced(tmp_path, monkeypatch, capsys):
    assert _run(tmp_path, monkeypatch, "1,0") == (1, 1)
    assert "starting a new one" not in capsys.readouterr().out


def test_every_worker_that_failed_is_named_with_its_own_code(tmp_path, monkeypatch):
    """Three workers: one finishes, one stops with its own error, one is killed every time it starts. The run
    reports both failures, not only the one with the largest code."""
    plans = {0: "0", 1: "1", 2: "kill"}

    def start(sc, url, n, i, *rest):
        marks = tmp_path / f"w{i}"
        marks.mkdir(exist_ok=True)
        return subprocess.Popen([sys.executable, "-c", SCRIPT, str(marks), plans[i]])

    monkeypatch.setattr(launcher, "_worker_process", start)
    codes = launcher._spawn(None, "sqlite:///x.db", 1, 3, tmp_path, False, None, 1)
    assert codes == [0, 1, -signal.SIGKILL]
    assert len(list((tmp_path / "w2").glob("start.*"))) == 1 + launcher.RESTARTS_PER_WORKER
    assert launcher.describe_exits(codes) == "worker 1 exited with code 1; worker 2 was killed (SIGKILL)"
    assert launcher.describe_exits([0, 0]) == ""


def test_a_stop_signal_with_a_failed_worker_reports_only_the_failure(tmp_path, monkeypatch):
    """Ctrl-C after one worker failed: the others stop cleanly (their codes count as 0), the failure is kept."""
    import threading

    plans = {0: "1", 1: "sleep"}

    def start(sc, url, n, i, *rest):
        marks = tmp_path / f"w{i}"
        marks.mkdir(exist_ok=True)
        if i == 1:  # both started: stop the run once worker 0 has failed
            threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        return subprocess.Popen([sys.executable, "-c", SCRIPT, str(marks), plans[i]])

    monkeypatch.setattr(launcher, "_worker_process", start)
    codes = launcher._spawn(None, "sqlite:///x.db", 1, 2, tmp_path, False, None, 1)
    assert codes == [1, 0]
    assert launcher.describe_exits(codes) == "worker 0 exited with code 1"


def test_a_stop_signal_during_a_replacement_reaches_the_replacement(tmp_path, monkeypatch):
    """SIGTERM arrives while the replacement is being started, when the launcher still knows only the dead
    process: the new one is stopped too, and `search run` stops (exit 143) instead of running the study on."""
    procs = []

    def start(*a):
        if procs:  # the replacement: the signal lands now
            os.kill(os.getpid(), signal.SIGTERM)
        procs.append(subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), "kill,sleep"]))
        return procs[-1]

    monkeypatch.setattr(launcher, "_worker_process", start)
    with pytest.raises(WorkerStopped):
        launcher._spawn(None, "sqlite:///x.db", 1, 1, tmp_path, False, None, 1)
    assert len(procs) == 2 and procs[1].poll() == -signal.SIGTERM


def test_a_replacement_or_a_resumed_run_does_not_replay_the_random_draws(tmp_path):
    """A worker started in a killed one's place (same index) or a rerun of `search run` seeds its sampler with
    the trials the study already holds: its random startup draws are new ones, not a replay of the first run's.
    A fresh study still starts from the same seeded draw."""
    sc = load_study(write_study(tmp_path, "seeds", space={"optimizer.lr": {"low": 1e-4, "high": 1e-1, "log": True}}))

    def first_draw(url: str) -> float:
        study = open_study(sc, open_storage(url), url, worker_index=0)
        trial = study.ask()
        lr = trial.suggest_float("optimizer.lr", 1e-4, 1e-1, log=True)
        study.tell(trial, 0.5)
        return lr

    url = f"sqlite:///{tmp_path / 's.db'}"
    draws = [first_draw(url) for _ in range(3)]
    assert len(set(draws)) == 3, draws
    assert first_draw(f"sqlite:///{tmp_path / 'fresh.db'}") == draws[0]
