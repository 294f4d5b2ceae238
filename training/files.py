"""Files that several processes share. Atomic writes: whoever reads the file (a resumed run, another worker,
`search predict`) sees the old file or the whole new one, never half of one, even when the writer dies
mid-write. File locks: an exclusive flock on a file, for work that one process of a machine does at a time (the
decode cache's build, a study's lock beside SQLite, a batch-ceiling probe), released when its holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "write_atomic", "file_lock", "file_lock_if_possible"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, so the rename stays on one file system) to write into;
    on a clean exit it replaces ``path`` in one step, on an error it is deleted and ``path`` is left as it
    was. The name holds the process id, so that two writers never share a temporary file, and ends in .tmp."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, text: str) -> None:
    """``path.write_text(text)`` (UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive flock on ``path``, created if missing; a lock file someone else created is opened read-only
    (flock works on a read-only descriptor). Raises OSError when the file can be neither created nor read."""
    try:
        fh = open(path, "a")
    except OSError:
        fh = open(path)
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def file_lock_if_possible(path: Path):
    """``file_lock``, or none where no lock file can be made (a read-only or full folder): yields whether the
    lock is held, for callers whose work is still right unserialized, only less economical."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path))
            held = True
        except OSError:
            held = False
        yield held
