"""Atomic file writes: whoever reads the file (a resumed run, another worker, `search predict`) sees the old
file or the whole new one, never half of one, even when the writer dies mid-write."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "write_atomic"]


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
