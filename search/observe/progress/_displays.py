"""Where a board's rows come from: one worker's own trials, or (`search run --workers K`) the store."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from optuna.trial import TrialState

from search.observe.progress._board import EpochProgress, LiveBoard, Row, live_output, study_line

__all__ = ["PROGRESS_ATTR", "POLL_SECONDS", "WorkerDisplay", "TrialProgress", "worker_display", "LauncherDisplay"]

log = logging.getLogger(__name__)
PROGRESS_ATTR = "progress"
POLL_SECONDS = 1.5  # a study line read from the store: fresh enough to watch, one cheap query per poll


class WorkerDisplay:
    """What one worker shows. ``plain``: the lines the lease and TrialReports print. ``live``: a board of the
    study and this worker. ``store``: nothing per epoch; each epoch goes to the RUNNING trial's ``progress``
    attribute, for `search run`'s board."""

    def __init__(self, mode: Literal["plain", "live", "store"] = "plain", workers: int | None = None) -> None:
        self.mode, self.workers = mode, workers
        self._live: LiveBoard | None = None
        self._study, self._budget = None, 0
        self._t0, self._polled = time.monotonic(), 0.0

    def watch(self, study, budget: int) -> None:
        self._study, self._budget = study, budget
        self._poll(force=True)

    def trial(self, lease, tag: str, epochs: int, folds: int | None) -> TrialProgress | None:
        """Where a trial's epochs go (TrialReports' ``progress``), or None for plain lines."""
        if self.mode == "plain":
            return None
        sink = TrialProgress(self, lease, tag, epochs, folds)
        sink.show(EpochProgress(tag, lease.number, 0, epochs, fold=1 if folds else None, folds=folds))
        return sink

    def __enter__(self) -> WorkerDisplay:
        if self.mode == "live":
            self._live = LiveBoard(sys.stdout).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._poll(force=True)  # the last frame shows how the study ended
            self._live.__exit__(*exc)
            self._live = None

    def _show(self, lease, row: EpochProgress) -> None:
        if self.mode == "store":
            try:
                lease.set_attrs(**{PROGRESS_ATTR: row.as_attr()})
            except Exception as e:  # a progress bar is not worth failing a trial over
                log.debug("progress not recorded: %s", e)
        elif self._live is not None:
            self._live.board.set(row.tag, row)
            self._poll()

    def _poll(self, force: bool = False) -> None:
        """The study line, from the study's trials (Optuna caches the finished ones: a poll reads the rest)."""
        if self._live is None or self._study is None or (not force and time.monotonic() - self._polled < POLL_SECONDS):
            return
        self._polled = time.monotonic()
        try:
            trials = self._study.get_trials(deepcopy=False)
        except Exception as e:  # the store is away: the lease waits it out; the board keeps its last line
            log.debug("study line not refreshed: %s", e)
            return
        name, budget, workers, t0 = self._study.study_name, self._budget, self.workers, self._t0
        self._live.board.head = lambda: study_line(name, trials, budget, workers, time.monotonic() - t0)


@dataclass
class TrialProgress:
    """One trial's epochs, as TrialReports hands them over."""
    display: WorkerDisplay
    lease: object
    tag: str
    epochs: int
    folds: int | None

    def epoch(self, epoch: int, m: dict, fold_index: int) -> None:
        self.show(EpochProgress(self.tag, self.lease.number, epoch, self.epochs, m["macro_f1"],
                                m["images_per_second"], fold_index + 1 if self.folds else None, self.folds))

    def show(self, row: EpochProgress) -> None:
        self.display._show(self.lease, row)


def worker_display(plain: bool, to_store: bool = False, workers: int | None = None) -> WorkerDisplay:
    """`search worker`'s display: ``to_store`` under `search run`'s board, else live on a terminal."""
    if to_store:
        return WorkerDisplay("store")
    return WorkerDisplay("live" if live_output(sys.stdout, plain) else "plain", workers)


class LauncherDisplay:
    """`search run --workers K`. On a terminal: one board of the study and its K local workers (w0..wK-1),
    redrawn from the store; each worker's output comes through a pipe and is printed above it. Elsewhere: the
    workers print their own plain lines to the launcher's output, as before."""

    def __init__(self, live: bool, study, budget: int, workers: int) -> None:
        self.live, self.study, self.budget, self.workers = live, study, budget, workers
        self._board: LiveBoard | None = None
        self._relays: list[threading.Thread] = []
        self._t0, self._polled = time.monotonic(), 0.0
        self._since = datetime.now()  # Optuna's trial times are naive local times

    def popen(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        if not self.live:  # --plain reaches a worker that shares our terminal
            return subprocess.Popen([*cmd, "--plain"], env=env)
        proc = subprocess.Popen([*cmd, "--progress-to-store"], env={**env, "PYTHONUNBUFFERED": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        relay = threading.Thread(target=self._relay, args=(proc,), daemon=True)
        relay.start()
        self._relays.append(relay)
        return proc

    def _relay(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if self._board is not None:
                self._board.print(line.rstrip("\n"))
            else:
                print(line, end="", flush=True)

    def tick(self) -> None:
        """From the launcher's supervision loop: redraw from the store every POLL_SECONDS."""
        if self._board is None or time.monotonic() - self._polled < POLL_SECONDS:
            return
        self._polled = time.monotonic()
        try:
            trials = self.study.get_trials(deepcopy=False)
        except Exception as e:  # the workers wait out a store outage; the board keeps its last frame
            log.debug("board not refreshed: %s", e)
            return
        board = self._board.board
        name, budget, workers, t0 = self.study.study_name, self.budget, self.workers, self._t0
        board.head = lambda: study_line(name, trials, budget, workers, time.monotonic() - t0)
        # each worker's latest trial of this run, running or just ended (a killed worker's stale trial is
        # older than its successor's); trials of an earlier run of the study belong to no worker of ours
        rows: dict[str, Row] = {f"w{i}": (None, "waiting for a trial") for i in range(self.workers)}
        for t in sorted(trials, key=lambda t: t.number):
            row = EpochProgress.from_attr(t.user_attrs.get(PROGRESS_ATTR))
            if row is not None and row.tag in rows and t.datetime_start and t.datetime_start >= self._since:
                rows[row.tag] = (row, "" if t.state == TrialState.RUNNING else t.state.name.lower())
        board.rows = rows

    def __enter__(self) -> LauncherDisplay:
        if self.live:
            self._board = LiveBoard(sys.stdout).__enter__()
            self.tick()
        return self

    def __exit__(self, *exc) -> None:
        for relay in self._relays:  # the workers have exited: their last lines are in the pipes
            relay.join(timeout=5)
        if self._board is not None:
            self._polled = 0.0
            self.tick()
            self._board.__exit__(*exc)
            self._board = None


