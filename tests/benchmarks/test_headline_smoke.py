"""benchmarks/headline.py --cpu-smoke keeps working: both arms (the hand-written peer study and `search run`) run
for real on CPU, and the script reports what they did; plus the arithmetic of the target and ratio on made-up
trials, both when ours reaches the target and when it never does."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clitools import cli_env
from pngs import open_chart

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "headline.py"


def _headline():
    spec = importlib.util.spec_from_file_location("headline_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_cpu_smoke_runs_both_arms_and_reports_them(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--trials", "3", "--epochs", "2",
                        "--out", str(out), "--data-cache", str(tmp_path / "cache"), "--work", str(work)],
                       cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["setup"]["trials"] == 3 and res["setup"]["epochs"] == 2 and res["setup"]["device"] == "cpu"
    assert len(res["seeds"]) == 1 and res["summary"]["seeds"] == 1
    s = res["seeds"][0]
    peer, ours, c = s["peer"], s["ours"], s["compare"]
    assert [t["state"] for t in peer["trials"]] == ["COMPLETE"] * 3  # no pruner in the peer
    assert sum(t["state"] in ("COMPLETE", "PRUNED") for t in ours["trials"]) == 3
    for arm in (peer, ours):
        for t in arm["trials"]:
            if t["state"] == "COMPLETE":
                assert 0.0 <= t["value"] <= 1.0, t
            assert 0.0 < t["started_s"] < t["finished_s"] <= arm["total_s"], t
            assert set(t["params"]) == set(res["space"]), t["params"]  # ours' names on both arms
    assert c["checks"] == {"same_space": True, "same_val_split": True, "peer_trials": True,
                           "ours_finished_trials": True, "no_failed_trials": True}
    peer_best = max(t["value"] for t in peer["trials"])
    assert c["peer_best"] == peer_best and c["target"] == pytest.approx(peer_best - 0.005)
    assert c["peer_s_to_target"] is not None  # the peer's own best reaches its target
    if c["ours_s_to_target"] is None:
        assert c["ratio"] is None and c["verdict"].startswith("not reached"), c
        assert res["summary"]["reached"] == 0 and res["summary"]["median_ratio"] is None
    else:
        assert c["ratio"] == pytest.approx(c["peer_s_to_target"] / c["ours_s_to_target"]) and c["ratio"] > 0
        assert res["summary"]["median_ratio"] == pytest.approx(c["ratio"])
    # one offline W&B run per trial in each arm
    for arm, folder in (("peer", work / "seed-0" / "peer" / "runs" / "wandb"),
                        ("ours", work / "seed-0" / "ours" / "runs" / "wandb")):
        assert len(list(folder.glob("offline-run-*"))) == 3, arm
    table = (out / "table.md").read_text()
    assert "Seeds: 1 (0)." in table and "| 0 | " in table and c["verdict"] in table
    assert table.count("| peer |") == 3 and table.count("| ours |") == 3  # the curves, one row per trial
    png = out / "curves.png"
    assert png.is_file() and png.stat().st_size > 5000
    open_chart(png)
    print(f"headline --cpu-smoke: {seconds:.1f}s; {c['verdict']}")


def _arm(name: str, finished: list[tuple[str, float | None, float]], total: float) -> dict:
    return {"arm": name, "total_s": total, "distributions": {}, "val_files": [],
            "trials": [{"number": i, "state": st, "value": v, "params": {}, "epochs": 2, "started_s": f - 1.0,
                        "finished_s": f} for i, (st, v, f) in enumerate(finished)]}


def test_target_and_ratio_arithmetic():
    h = _headline()
    setup = h.Setup(model="m", image_size=32, batch_size=8, trials=3, epochs=2, device="cpu", workers=0, threads=1,
                    trials_per_gpu=1, wandb=False)
    peer = _arm("peer", [("COMPLETE", 0.60, 10.0), ("COMPLETE", 0.80, 20.0), ("COMPLETE", 0.70, 30.0)], 31.0)
    # ours: a pruned trial never counts, however high its partial score was; 0.797 is within 0.5 pt of 0.80
    ours = _arm("ours", [("PRUNED", None, 2.0), ("COMPLETE", 0.797, 5.0), ("COMPLETE", 0.90, 8.0)], 9.0)
    c = h.compare(peer, ours, setup)
    assert c["target"] == pytest.approx(0.795) and c["peer_s_to_target"] == 20.0 and c["ours_s_to_target"] == 5.0
    assert c["ratio"] == pytest.approx(4.0) and c["verdict"] == "4.00x"
    slow = _arm("ours", [("COMPLETE", 0.79, 5.0), ("PRUNED", None, 6.0), ("COMPLETE", 0.50, 8.0)], 9.0)
    c = h.compare(peer, slow, setup)
    assert c["ours_s_to_target"] is None and c["ratio"] is None
    assert c["verdict"] == "not reached: ours' best 0.7900 < target 0.7950 after 9.0 s"
    summary = h.summarize([{"compare": c}])
    assert summary["reached"] == 0 and summary["median_ratio"] is None and "did not reach" in summary["text"]
    assert h.curve(slow) == [(5.0, 0.79), (6.0, 0.79), (8.0, 0.79)]
