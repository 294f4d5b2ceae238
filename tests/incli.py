"""Run the real ``search`` entry point (``search.cli._app.main``) inside the test process, the way a fresh
``search ...`` process would see it, and put back every piece of process-global state it touches.

A subprocess costs a torch import (~6 CPU-seconds); in-process, torch is imported once per test session. What a
fresh process gives for free is rebuilt around each call:

* argv, working directory and environment: ``sys.argv = ["search", *args]``, ``chdir(cwd)``, ``env`` set and
  ``drop`` removed (through pytest's ``monkeypatch``); any change the code under test makes to ``os.environ`` is
  undone right after the call.
* stdout/stderr: read with pytest's ``capfd`` (file-descriptor level), so output written to fd 1/2 directly or to
  ``sys.stdout``/``sys.stderr`` is seen alike.
* logging: the root logger starts with no handlers (pytest's own capture handlers are set aside), so ``main()``'s
  ``logging.basicConfig`` really installs its stderr handler, bound to the captured stderr, as in a fresh process.
  Library handlers created earlier with the default stream (optuna's, bound to whatever ``sys.stderr`` was
  when optuna first configured its logger, e.g. a previous test's now-closed capture file) are pointed at the
  current stderr for the call. Handlers, levels, ``logging.disable`` and optuna's verbosity are restored after.
* warnings: pytest records warnings per test instead of printing them; here they are recorded under the filters a
  fresh ``search`` process starts with (Python's defaults plus ``search/__init__``'s ExperimentalWarning ignore)
  and appended to stderr as Python would print them, so a warning still counts as a stray stderr line.
* exit: ``SystemExit`` gives the exit status as the OS would (``None`` -> 0, an int masked to 0..255, anything else
  printed to stderr and 1); any other exception is printed as a traceback with status 1, as the interpreter does.
  pytest's own exceptions (timeouts, KeyboardInterrupt) pass through.
* also restored: ``search.cli._app._state``, torch's thread count, the ``random``/numpy/torch RNG states and the
  SIGINT/SIGTERM handlers.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

__all__ = ["run_main"]

# Python's own default filters (python -c "import warnings; print(warnings.filters)"), applied last-to-first
_PY_DEFAULT_FILTERS = [
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
]


def _fresh_process_filters() -> None:
    import optuna

    warnings.resetwarnings()
    for action, category, module in reversed(_PY_DEFAULT_FILTERS):
        warnings.filterwarnings(action, category=category, module=module)
    for spec in filter(None, os.environ.get("PYTHONWARNINGS", "").split(",")):
        warnings._setoption(spec)  # what -W / PYTHONWARNINGS add at startup
    # search/__init__.py adds this at import, which a fresh `search` process always does before main()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _exit_status(e: SystemExit) -> tuple[int, str]:
    code = e.code
    if code is None:
        return 0, ""
    if isinstance(code, int):
        return code & 0xFF, ""
    return 1, f"{code}\n"  # sys.exit("message"): printed to stderr, status 1


def _loggers() -> list[logging.Logger]:
    return [logging.getLogger()] + [lg for lg in list(logging.Logger.manager.loggerDict.values())
                                    if isinstance(lg, logging.Logger)]


def _stderr_bound(h: logging.Handler) -> bool:
    """A plain StreamHandler made with the default stream: the real stderr, a pytest capture file or a closed one."""
    if type(h) is not logging.StreamHandler:  # FileHandler, pytest's LogCaptureHandler, ...: leave alone
        return False
    s = h.stream
    if s is sys.__stdout__ or s is sys.stdout:
        return False
    return (s is sys.__stderr__ or type(s).__module__.startswith("_pytest")
            or getattr(s, "closed", False) is True)


class _ProcessState:
    """Everything a fresh process would start clean with and that the call may change, saved and restored."""

    def __init__(self) -> None:
        import numpy as np
        import optuna
        import torch

        import search.cli._app

        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.argv = sys.argv
        self.cli_state = dict(search.cli._app._state)
        self.threads = torch.get_num_threads()
        self.rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        self.signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        self.optuna_verbosity = optuna.logging.get_verbosity()
        self.disable = logging.root.manager.disable
        self.levels = {lg: lg.level for lg in _loggers()}
        self.handlers = {lg: lg.handlers[:] for lg in _loggers()}
        self.streams = {h: h.stream for hs in self.handlers.values() for h in hs if _stderr_bound(h)}

    def enter(self) -> None:
        root = logging.getLogger()
        root.handlers = []  # basicConfig() only configures a root logger without handlers
        for h in self.streams:
            h.stream = sys.stderr  # no setStream(): it would flush the old, possibly closed, stream

    def restore(self) -> None:
        import numpy as np
        import optuna
        import torch

        import search.cli._app

        os.environ.clear()
        os.environ.update(self.environ)
        os.chdir(self.cwd)
        sys.argv = self.argv
        search.cli._app._state.clear()
        search.cli._app._state.update(self.cli_state)
        torch.set_num_threads(self.threads)
        random.setstate(self.rng[0])
        np.random.set_state(self.rng[1])
        torch.set_rng_state(self.rng[2])
        for s, h in self.signals.items():
            if h is not None:
                signal.signal(s, h)
        optuna.logging.set_verbosity(self.optuna_verbosity)
        logging.disable(self.disable)
        for lg in _loggers():
            old = self.handlers.get(lg, [])
            for h in lg.handlers[:]:
                if h not in old:  # added by the call (basicConfig's stderr handler): bound to this call's capture
                    lg.removeHandler(h)
                    h.close()
            if lg in self.handlers:  # a logger made during the call keeps what its library gave it
                lg.handlers = old[:]
                lg.setLevel(self.levels[lg])
        for lg in _loggers():
            for h in lg.handlers:
                if h not in self.streams and _stderr_bound(h) and h.stream is sys.stderr:
                    h.stream = sys.__stderr__  # made during the call (e.g. optuna's first use): not this capture
        for h, s in self.streams.items():
            h.stream = s


def run_main(args, *, cwd: Path, capfd, monkeypatch, env: dict[str, str] | None = None,
             drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``search ARGS`` run by ``search.cli._app.main()`` in this process; the result as ``subprocess.run`` gives it."""
    import search.cli._app

    monkeypatch.setattr(sys, "argv", ["search", *args])
    monkeypatch.chdir(cwd)
    for k in drop:
        monkeypatch.delenv(k, raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    state = _ProcessState()
    capfd.readouterr()  # nothing from before the call
    extra = ""
    with warnings.catch_warnings(record=True) as caught:
        _fresh_process_filters()
        state.enter()
        try:
            search.cli._app.main()
            rc = 0  # main() always exits; returning would be status 0 too
        except SystemExit as e:
            rc, extra = _exit_status(e)
        except Exception:  # what the interpreter prints for an uncaught exception
            rc, extra = 1, traceback.format_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            state.restore()
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in caught)
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(["search", *args], rc, out, err + extra + shown)
