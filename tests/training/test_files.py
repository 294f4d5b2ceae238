"""Atomic writes: a reader sees the old file or the whole new one; a failed write leaves no temporary file."""

from __future__ import annotations

import pytest

from training.files import atomic_path, write_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    f = tmp_path / "best.yaml"
    write_atomic(f, "old\n")
    with pytest.raises(RuntimeError), atomic_path(f) as tmp:
        tmp.write_text("half of the new")
        assert f.read_text() == "old\n"  # not visible before the write completes
        raise RuntimeError("the writer died")
    assert f.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["best.yaml"]
    write_atomic(f, "new\n")
    assert f.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["best.yaml"]
