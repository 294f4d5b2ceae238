"""Where a run's folder goes: a new one by default, never another run's unasked.

A run folder is what ``fit`` writes (config.yaml, split.json, metrics.json, best.pt, last.pt); ``--seeds`` and
cross-validation write one per seed or fold under a parent (``seed-N``, ``fold-i``). A folder *holds a finished
run* once some run in it has written its metrics.json (after its first epoch).
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

__all__ = ["METRICS_FILE", "RUN_FILES", "finished_run_in", "new_run_folder", "output_folder", "clear_run"]

METRICS_FILE = "metrics.json"
RUN_FILES = ("config.yaml", "split.json", METRICS_FILE, "best.pt", "last.pt")
_PARTS = ("fold-*", "seed-*")  # the runs a parent folder holds (search cv, search train --seeds)


def finished_run_in(folder: Path) -> Path | None:
    """The metrics.json of a finished run in ``folder`` or in one of its fold/seed runs, else None."""
    if not folder.is_dir():
        return None
    if (folder / METRICS_FILE).is_file():
        return folder / METRICS_FILE
    for pattern in _PARTS:
        for part in sorted(folder.glob(pattern)):
            if (part / METRICS_FILE).is_file():
                return part / METRICS_FILE
    return None


def new_run_folder(root: Path, stem: str) -> Path:
    """``root/<stem>-<n>``, n one above the highest taken, made now (mkdir is the claim: two commands started
    together get different folders)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "run"
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := re.fullmatch(re.escape(stem) + r"-(\d+)", p.name))]
    n = max(taken, default=0) + 1
    while True:
        try:
            (root / f"{stem}-{n}").mkdir()
            return root / f"{stem}-{n}"
        except FileExistsError:
            n += 1


@contextlib.contextmanager
def output_folder(explicit: Path | None, default_root: Path, stem: str, overwrite: bool,
                  option: str = "--output") -> Iterator[Path]:
    """The folder a command writes its run(s) to: ``explicit``, refused when it holds a finished run (unless
    ``overwrite``, which clears the earlier run's files first), else a new folder under ``default_root``. A new
    folder that is still empty when the block fails is removed: a mistake leaves nothing behind."""
    if explicit is None:
        folder, made = new_run_folder(default_root, stem), True
    else:
        folder, made = explicit, not explicit.exists()
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{option} {folder} is a file; give a folder for the run")
        found = finished_run_in(folder)
        if found is not None and not overwrite:
            raise ConfigError(f"{option} {folder} already holds a finished run ({found}); give another {option}, "
                              "leave it out for a new folder, or add --overwrite to replace that run")
        if found is not None:
            clear_run(folder)
    try:
        yield folder
    except BaseException:
        if made and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def clear_run(folder: Path) -> None:
    """Remove a run's own files and its fold/seed runs from ``folder`` (nothing else a user keeps there)."""
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for pattern in _PARTS:
        for part in folder.glob(pattern):
            if part.is_dir():
                shutil.rmtree(part)
