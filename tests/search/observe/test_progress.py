"""Live progress: on a pseudo-terminal `search run` and `search train` draw Rich's board (the study line, a bar
per worker); to a pipe, or with --plain, they print the plain lines and never an escape code. The CLI runs in
this process (its stdout a real pty, or captured) and `search run --workers 2` starts real worker processes."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import sys
import termios
import threading

import pytest
from optuna.trial import TrialState

from clitools import study_trials
from incli import run_main
from search.observe.progress import PROGRESS_ATTR, eta_seconds
from studygen import write_study

BAR = "━"  # Rich's bar character (a UTF-8 terminal)
ESC = "\x1b"


@contextlib.contextmanager
def terminal(monkeypatch):
    """sys.stdout on a pseudo-terminal, 160 columns wide; yields the list its output is gathered into (as
    text once the block ends)."""
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, (40, 160))
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "160")  # Rich sizes from the standard fds, which pytest captures
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the slave side is closed and everything is read
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out = open(slave, "w", encoding="utf-8", buffering=1, closefd=False)
    before = sys.stdout
    monkeypatch.setattr(sys, "stdout", out)
    got: list[str] = []
    try:
        yield got
    finally:
        out.flush()
        monkeypatch.setattr(sys, "stdout", before)
        out.close()
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
        got.append(b"".join(chunks).decode("utf-8", "replace"))


def _study(tmp_path, name: str):
    return write_study(tmp_path, name, epochs=1, n_trials=2)


def test_eta_spreads_the_remaining_trials_over_the_workers():
    # 4 to go at a mean of 15 s, 5 s of one already spent, 2 workers
    assert eta_seconds(4, [10.0, 20.0], [5.0], 2) == pytest.approx((4 * 15 - 5) / 2)
    assert eta_seconds(1, [10.0], [30.0], 1) == 0.0  # running longer than the mean: due now, never negative
    assert eta_seconds(3, [], [], 2) is None  # nothing finished: no estimate
    assert eta_seconds(0, [10.0], [], 1) == 0.0


@pytest.mark.slow  # two worker processes, each importing torch
def test_run_on_a_terminal_draws_the_study_line_and_a_bar_per_worker(tmp_path, capfd, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = _study(tmp_path, "live")
    with terminal(monkeypatch) as got:
        r = run_main(["run", "--study", str(study), "--storage", url, "--workers", "2", "--no-wandb"],
                     cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    screen = got[0]
    assert ESC in screen and BAR in screen
    assert "study live: 2/2 finished (2 complete, 0 pruned), 0 failed, 0 running" in screen
    assert "best macro_f1 0." in screen and "ETA" in screen
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # the frames without their colours and cursor moves
    for trial in (0, 1):  # the last frame: each worker's last trial, its bar full, and how it ended
        assert re.search(rf"w[01] +trial {trial} +{BAR}+ +epoch 1/1 +macro_f1 0\.\d{{4}} +[\d,]+ img/s +complete",
                         text), text[-3000:]
    assert "COMPLETE macro_f1=" in screen, "the workers' own lines are printed above the board"
    assert "epoch 1/1 macro_f1=" not in screen, "workers under the board print no epoch lines"
    assert "done: 2 complete" in screen
    # what the board drew from: each worker's last epoch, on its trial in the store
    trials = study_trials(url, "live")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert {t.user_attrs[PROGRESS_ATTR]["epoch"] for t in trials} == {1}
    assert {t.user_attrs[PROGRESS_ATTR]["tag"] for t in trials} <= {"w0", "w1"}


def test_run_to_a_pipe_prints_plain_lines_without_escape_codes(tmp_path, capfd, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    monkeypatch.setenv("FORCE_COLOR", "1")  # set by some CI runners; Rich alone would draw into the pipe
    r = run_main(["run", "--study", str(_study(tmp_path, "piped")), "--storage", url, "--workers", "1",
                  "--no-wandb"], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    assert ESC not in r.stdout + r.stderr
    assert "[w0] trial 0 epoch 1/1 macro_f1=" in r.stdout and "[w0] trial 1 COMPLETE" in r.stdout
    assert "done: 2 complete" in r.stdout
    assert PROGRESS_ATTR not in study_trials(url, "piped")[0].user_attrs, "only `search run`'s board asks for it"


def test_train_draws_a_bar_on_a_terminal_and_plain_lines_with_plain_or_to_a_pipe(tmp_path, capfd, monkeypatch):
    config = _study(tmp_path, "one")
    train = ["train", "--config", str(config), "--output", str(tmp_path / "out")]
    with terminal(monkeypatch) as got:
        r = run_main(train, cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    assert ESC in got[0] and BAR in got[0] and "epoch 1/1" in got[0] and "img/s" in got[0]
    assert "macro_f1 0." in got[0] and "outputs in" in got[0]

    with terminal(monkeypatch) as got:
        r = run_main([*train, "--plain", "--overwrite"], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    assert ESC not in got[0] and "epoch 1/1 macro_f1=" in got[0]

    r = run_main([*train, "--overwrite"], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    assert ESC not in r.stdout + r.stderr and "epoch 1/1 macro_f1=" in r.stdout and BAR not in r.stdout
