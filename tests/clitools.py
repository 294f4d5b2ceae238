"""Run the real `search` CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}  # each process its own W&B service
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", SEARCH_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def search(*args: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd, env=cli_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def search_bg(*args: str, cwd: Path, log: Path, **env: str) -> subprocess.Popen:
    fh = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "search", *args], cwd=cwd, env=cli_env(**env),
                            stdout=fh, stderr=subprocess.STDOUT, text=True)


def study_trials(url: str, name: str) -> list:
    """The study's trials as the store holds them now; the engine is closed at once (tests poll this in loops
    and must not pile up idle Postgres connections)."""
    import optuna

    from search.store import open_storage

    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=True)
    finally:
        storage.engine.dispose()


def checkpoint_epoch(trial) -> int:
    """The epoch of a running trial's last.pt (0 when it has none yet). A trial reports each epoch before it
    writes that epoch's checkpoint, so a test that stops it to check the resume waits for this, not the report."""
    from training.checkpoint import load_checkpoint

    out = trial.user_attrs.get("output_dir")
    path = Path(out) / "last.pt" if out else None
    if path is None or not path.is_file():
        return 0
    try:
        return int(load_checkpoint(path)["epoch"])
    except Exception:  # replaced while we read it: ask again next poll
        return 0
