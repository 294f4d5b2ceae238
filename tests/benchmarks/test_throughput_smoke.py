"""`benchmarks/throughput.py --cpu-smoke`: the whole-trial rows run a real trial through the worker and report
its train images per second against the model-only limit at the same size and batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clitools import cli_env

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_cpu_smoke_times_whole_trials_against_the_model_only_limit(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--cpu-smoke", "--json",
                        str(tmp_path / "out.json")], cwd=tmp_path, env=cli_env(SEARCH_CACHE_DIR=str(tmp_path / "c")),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((tmp_path / "out.json").read_text())["trials"]
    assert [(t["model"], t["size"]) for t in rows] == [("resnet18", 32), ("efficientnet_b0", 32)]
    for t in rows:
        assert t["train_images"] == t["epochs"] * 102 and t["val_images"] == t["epochs"] * 26  # 128 images, 80/20
        assert t["trial_seconds"] > 0
        assert t["images_per_second"] == pytest.approx(t["train_images"] / t["trial_seconds"])
        assert t["model_only"] > 0
        assert f"| {t['model']}@32 | {t['batch']} | {t['model_only']:.0f} | {t['images_per_second']:.0f} |" in r.stdout
