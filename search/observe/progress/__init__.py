"""Live progress on a terminal (Rich); plain lines everywhere else.

On a terminal, `search run`, `search worker` and `search train` draw a board: a study line (finished/budget by
state, best macro-F1 and its trial, elapsed time, an ETA) and one line per worker (its trial, an epoch bar,
macro-F1, img/s). Anything printed meanwhile (trial starts and ends, log lines) appears above the board. Output
that is not a terminal (a pipe, a log file, ``| tee``, CI), or ``--plain``, gets the plain lines of before and
never an escape code.

``board``: what is drawn and how; ``displays``: where it comes from. `search run --workers K` starts K worker
processes: each writes its trial's epoch to the RUNNING trial's ``progress`` user attribute (through the lease,
like any attribute), and the launcher redraws the board from the store every POLL_SECONDS; the workers' own
output reaches the launcher through a pipe and is printed above the board. A worker alone (and `search run`
with one worker, in its own process) draws its own board from what it trains and from its study's trials.
"""

from search.observe.progress._board import (
           Board,
           EpochProgress,
           LiveBoard,
           epoch_display,
           eta_seconds,
           live_output,
           study_line,
)
from search.observe.progress._displays import PROGRESS_ATTR, LauncherDisplay, WorkerDisplay, worker_display

__all__ = ["live_output", "EpochProgress", "study_line", "eta_seconds", "Board", "LiveBoard", "epoch_display",
           "WorkerDisplay", "worker_display", "LauncherDisplay", "PROGRESS_ATTR"]
