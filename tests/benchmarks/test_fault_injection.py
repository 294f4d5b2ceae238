"""The fault-injection script: random SIGKILLs of live workers lose no trial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_random_worker_kills_lose_no_trial(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fault_injection.py"), "--workers", "2",
                        "--kills", "2", "--n-trials", "4", "--storage", f"sqlite:///{tmp_path / 'f.db'}"],
                       capture_output=True, text=True, timeout=480, cwd=tmp_path)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    lines = dict(line.rsplit(None, 1) for line in r.stdout.splitlines() if line.startswith(("trials", "lost", "left")))
    assert lines["trials requested"] == "4" and lines["trials finished"] == "4"
    assert lines["lost"] == "0" and lines["left running/waiting"] == "0"
    assert "kill 2: SIGKILL" in r.stdout
