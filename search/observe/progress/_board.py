"""What the live view draws: the study line, one row per worker with its epoch bar, on a terminal only."""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime

from optuna.trial import FrozenTrial, TrialState

from search.ranking import best_of

__all__ = ["live_output", "EpochProgress", "fmt_seconds", "eta_seconds", "study_line", "Board", "LiveBoard",
           "epoch_display"]

BAR_WIDTH = 30


def live_output(stream, plain: bool) -> bool:
    """Draw with Rich only on a terminal. Our own isatty test, not Rich's detection, which FORCE_COLOR (set by
    some CI runners) turns on for a pipe too: a log must never hold escape codes."""
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty and isatty())
    except ValueError:  # a closed stream
        tty = False
    return tty and not plain and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


@dataclass(frozen=True)
class EpochProgress:
    """Where one worker's trial is: also what a worker writes to its RUNNING trial for `search run` to draw."""
    tag: str                              # the worker ("w0"), or "train"
    trial: int | None
    epoch: int
    epochs: int
    macro_f1: float | None = None         # None before the first epoch, and in a full-data run
    images_per_second: float | None = None
    fold: int | None = None               # 1-based, with cv
    folds: int | None = None

    @classmethod
    def from_attr(cls, value) -> EpochProgress | None:
        """From a trial's ``progress`` attribute; None for anything else (a newer or older writer's shape)."""
        if not isinstance(value, dict):
            return None
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in value.items() if k in names})
        except TypeError:
            return None

    def as_attr(self) -> dict:
        return asdict(self)


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


def eta_seconds(remaining: int, durations: list[float], running: list[float], workers: int) -> float | None:
    """Seconds until ``remaining`` more trials finish, ``workers`` at a time, each taking the mean of the
    finished ones' ``durations``; the ``running`` trials' elapsed seconds are already spent (each counted up to
    that mean). None before any trial finished."""
    if remaining <= 0:
        return 0.0
    if not durations:
        return None
    mean = statistics.fmean(durations)
    left = remaining * mean - sum(min(e, mean) for e in sorted(running, reverse=True)[:remaining])
    return max(0.0, left) / max(1, workers)


def study_line(name: str, trials: list[FrozenTrial], budget: int, workers: int | None, elapsed: float,
               now: datetime | None = None) -> str:
    """'study demo: 7/20 finished (5 complete, 2 pruned), 0 failed, 2 running | best macro_f1 0.9712 (trial 4)
    | elapsed 1m05s, ETA 2m10s'. ``workers``: None counts the running trials (a worker sees no other way to
    know how many share the study)."""
    now = now or datetime.now()  # Optuna stores naive local times
    by = {s: [t for t in trials if t.state == s] for s in TrialState}
    done = by[TrialState.COMPLETE] + by[TrialState.PRUNED]
    running = by[TrialState.RUNNING]
    best = best_of(by[TrialState.COMPLETE])
    durations = [t.duration.total_seconds() for t in done if t.duration is not None]
    spent = [(now - t.datetime_start).total_seconds() for t in running if t.datetime_start is not None]
    eta = eta_seconds(budget - len(done), durations, spent, workers or len(running))
    return (f"study {name}: {len(done)}/{budget} finished ({len(by[TrialState.COMPLETE])} complete, "
            f"{len(by[TrialState.PRUNED])} pruned), {len(by[TrialState.FAIL])} failed, {len(running)} running"
            f" | best macro_f1 {'-' if best is None else f'{best.value:.4f} (trial {best.number})'}"
            f" | elapsed {fmt_seconds(elapsed)}, ETA {'-' if eta is None else fmt_seconds(eta)}")


Row = tuple[EpochProgress | None, str]  # where a worker is (None: nowhere yet), and a word on it


class Board:
    """What the live view draws: a head line and one row per worker: its trial's epoch bar, or only a word
    ('waiting for a trial'), plus a word after the bar (how its last trial ended). Rows are replaced whole,
    never mutated: Rich draws from its own thread."""

    def __init__(self) -> None:
        self.head: Callable[[], str] | None = None  # called at each frame: the elapsed time and ETA run on
        self.rows: dict[str, Row] = {}

    def set(self, tag: str, row: EpochProgress | None, note: str = "") -> None:
        self.rows = {**self.rows, tag: (row, note)}

    def __rich__(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        for tag, (row, note) in sorted(self.rows.items()):
            if row is None:
                grid.add_row(tag, "", Text(note, style="dim"))
                continue
            done = ((row.fold or 1) - 1) * row.epochs + row.epoch
            where = f"epoch {row.epoch}/{row.epochs}" + (f" fold {row.fold}/{row.folds}" if row.folds else "")
            grid.add_row(tag, "" if row.trial is None else f"trial {row.trial}",
                         ProgressBar(total=row.epochs * (row.folds or 1), completed=done, width=BAR_WIDTH), where,
                         "macro_f1 -" if row.macro_f1 is None else f"macro_f1 {row.macro_f1:.4f}",
                         "" if row.images_per_second is None else f"{row.images_per_second:,.0f} img/s",
                         Text(note, style="dim"))
        try:
            head = [Text(self.head())] if self.head else []
        except Exception as e:  # drawn in Rich's thread: a bad frame must not stop the board
            head = [Text(f"study line unavailable: {e}")]
        return Group(*head, grid)


class LiveBoard:
    """A Board drawn on ``stream`` (a terminal) while the ``with`` block runs; what is printed or logged
    meanwhile appears above it. The last frame stays on screen."""

    def __init__(self, stream) -> None:
        self.board = Board()
        self.stream = stream

    def __enter__(self) -> LiveBoard:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=self.stream, force_terminal=True)  # live_output() said it is a terminal
        self._live = Live(self.board, console=self.console, refresh_per_second=2)
        before_err, before_out = sys.stderr, sys.stdout
        self._live.__enter__()
        # logging's handlers hold the stream they were made with (information: stdout, warnings: stderr);
        # Live's proxies print above the board
        self._handlers = _logs_to(sys.stderr, (before_err, sys.__stderr__)) + \
            _logs_to(sys.stdout, (before_out, sys.__stdout__))
        return self

    def __exit__(self, *exc) -> None:
        for handler, stream in self._handlers:
            handler.stream = stream
        self._live.__exit__(*exc)

    def print(self, line: str) -> None:
        from rich.text import Text

        self.console.print(Text(line), soft_wrap=True)  # Text: no markup or highlighting of someone's output


def _logs_to(stream, old: tuple) -> list[tuple[logging.StreamHandler, object]]:
    """Point the root logger's handlers that write to one of ``old`` at ``stream``; returns what to restore."""
    moved = []
    for h in logging.getLogger().handlers:
        if type(h) is logging.StreamHandler and stream is not h.stream and any(h.stream is o for o in old):
            moved.append((h, h.stream))
            h.stream = stream
    return moved


@contextlib.contextmanager
def epoch_display(plain_callback: Callable[[int, dict], None], epochs: int, plain: bool,
                  stream) -> Iterator[Callable[[int, dict], None]]:
    """`search train`'s epoch callback: ``plain_callback`` (a line per epoch) unless ``stream`` is a terminal,
    where one live line shows the epoch bar, macro-F1 and img/s (a new run, e.g. the next seed, restarts it)."""
    if not live_output(stream, plain):
        yield plain_callback
        return
    with LiveBoard(stream) as live:
        live.board.set("train", None, "starting")

        def show(epoch: int, m: dict) -> None:
            live.board.set("train", EpochProgress("train", None, epoch, epochs, m["macro_f1"],
                                                  m["images_per_second"]))

        yield show
