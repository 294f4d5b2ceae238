"""benchmarks/search_efficiency.py --smoke: real workers on real study files, and what it prints and writes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clitools import cli_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_search_efficiency_smoke_runs_the_service_and_reports_consistent_numbers(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--smoke", "--out",
                        str(out), "--cache", str(tmp_path / "cache")], cwd=tmp_path, env=cli_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    trials, epochs = report["trials"], report["epochs"]
    assert (trials, epochs, report["seeds"]) == (4, 2, 1)
    names = ["random", "tpe", "tpe+median"]
    assert list(report["runs"]) == names

    table = (out / "results.md").read_text()
    assert table in r.stdout + "\n"
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert set(names) <= set(rows), table

    for name in names:
        run = report["runs"][name]["0"]
        row = report["summary"]["rows"][name]
        done = [t for t in run["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
        assert len(done) == trials  # the worker's budget: complete + pruned
        used = sum(t["epochs"] for t in run["trials"])
        assert 0 < used <= trials * epochs
        assert row["epochs"] == used
        for t in run["trials"]:
            assert t["epochs"] == len(t["curve"]) and 1 <= t["epochs"] <= epochs
            assert (t["value"] is None) == (t["state"] != "COMPLETE")
        best = max(t["value"] for t in run["trials"] if t["value"] is not None)
        assert 0.0 <= best <= 1.0
        assert row["final"] == best
        assert f"{best:.4f}" in rows[name]
        assert all(0.0 <= v <= best for v in row["at"].values())
        if name != "tpe+median":
            assert all(t["epochs"] == epochs for t in run["trials"])  # no pruner: every trial trains them all

    pruned = report["runs"]["tpe+median"]["0"]
    assert pruned["pruner"]["name"] == "median" and report["summary"]["rows"]["tpe+median"]["baseline"] == "tpe"
    assert report["summary"]["rows"]["tpe+median"]["pruned"] >= 1, "the smoke settings must let the pruner act"
    assert re.search(r"tpe\+median \|.*\(vs tpe\)", table)
    # random's and tpe's start-up draws use the same seed: their first trials are the same configurations
    assert report["runs"]["random"]["0"]["trials"][0]["params"] == report["runs"]["tpe"]["0"]["trials"][0]["params"]

    checks = report["targets"]
    assert [c["target"][:3] for c in checks] == ["(a)", "(b)"]
    for c in checks:
        assert c["pass"] in (True, False)
        assert re.search(("PASS " if c["pass"] else "FAIL ") + re.escape(c["target"]), r.stdout)

    png = out / "search_efficiency.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a second run into the same folder does not replace the first one's results unless told to
    saved = (out / "results.json").read_text()
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--smoke", "--out",
                            str(out), "--cache", str(tmp_path / "cache")], cwd=tmp_path, env=cli_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "Traceback" not in again.stderr
    assert "holds an earlier run's results" in again.stderr and "--overwrite" in again.stderr
    assert (out / "results.json").read_text() == saved
    both = subprocess.run(again.args + ["--reuse", "--overwrite"], cwd=tmp_path, env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    assert both.returncode != 0 and "give one of the two" in both.stderr and "Traceback" not in both.stderr
    # --reuse takes every run from the records it kept: the same runs, nothing trained again
    reused = subprocess.run(again.args + ["--reuse"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                            timeout=300)
    assert reused.returncode == 0, reused.stderr[-2000:]
    assert reused.stdout.count("(reused)") == len(names)
    assert json.loads((out / "results.json").read_text())["runs"] == report["runs"]


def test_the_benchmarked_default_strategy_is_what_a_study_without_sampler_or_pruner_gets():
    """The targets are checked on the benchmark's tpe+median row: it must be the service's defaults, spelt out."""
    import importlib.util

    from search.study._pruners import Median
    from search.study._samplers import Tpe, startup_trials

    spec = importlib.util.spec_from_file_location("search_efficiency", ROOT / "benchmarks" / "search_efficiency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sampler, pruner = bench.STRATEGIES["tpe+median"]
    assert Median.model_validate(pruner) == Median()
    assert sampler == {"name": "tpe", "n_startup_trials": Tpe().n_startup_trials}
    study = bench.study_dict("s", sampler, pruner, 0, bench.TRIALS, 20, {"source": "imagefolder", "root": "data"},
                             Path("cache"))
    assert study["sampler"]["n_startup_trials"] == startup_trials("auto", bench.TRIALS) == 8
