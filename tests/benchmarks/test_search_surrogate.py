"""benchmarks/search_surrogate.py: studies on a table of recorded curves, run by the service's own sampler, pruner,
worker seeds and parameter draws; with two workers their trials overlap and the pruner sees the other's epochs."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clitools import cli_env

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 6


def _module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("search_surrogate", ROOT / "benchmarks" / "search_surrogate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(folder: Path, n: int = 120, seed: int = 0) -> None:
    """A run record as search_efficiency.py writes it: the score rises with closeness of log10(lr) to -2.5 (adamw
    and adam) or -1 (sgd); far from it a trial stays at chance."""
    eff = _module().eff
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        opt = ["adamw", "adam", "sgd"][i % 3]
        lr = float(10 ** rng.uniform(-5, 0))
        top = max(0.05, 0.9 - 0.35 * abs(math.log10(lr) - (-1 if opt == "sgd" else -2.5)))
        curve = [round(0.05 + (top - 0.05) * (1 - math.exp(-(e + 1) / 2)), 4) for e in range(EPOCHS)]
        params = {"optimizer.name": opt, "optimizer.lr": lr,
                  "optimizer.weight_decay": float(10 ** rng.uniform(-6, -1)),
                  "model.dropout": float(rng.uniform(0, 0.7)), "loss.label_smoothing": float(rng.uniform(0, 0.4)),
                  "train.batch_size": [32, 64, 128][i % 3]}
        assert set(params) == set(eff.SPACE)
        trials.append({"number": i, "state": "COMPLETE", "epochs": EPOCHS, "value": max(curve),
                       "seconds": EPOCHS * (0.5 + 0.5 * (i % 2)), "curve": curve, "params": params})
    folder.mkdir(parents=True)
    (folder / "random-s0.json").write_text(json.dumps({"strategy": "random", "seed": 0, "trials": trials}))


def test_nearest_row_answers_a_recorded_configuration_with_its_own_curve(tmp_path):
    m = _module()
    _records(tmp_path / "t-w1" / "runs")
    table = m.Table.load([tmp_path / "t-w1" / "runs"], m.eff.SPACE, EPOCHS)
    assert len(table.rows) == 120
    for row in table.rows[:10]:
        assert table.rows[table.nearest(row["params"])] is row
    fit = table.fit_weights()
    # the score is a function of optimizer and lr alone: the fit must find lr the parameter that matters
    assert fit["weights"]["optimizer.lr"] == max(fit["weights"].values())
    assert fit["spearman"] > 0.8 and fit["mae"] < 0.1


TPE = {"name": "tpe", "n_startup_trials": 4}
MEDIAN = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1}


def _table(tmp_path):
    m = _module()
    _records(tmp_path / "t-w1" / "runs")
    return m, m.Table.load([tmp_path / "t-w1" / "runs"], m.eff.SPACE, EPOCHS)


def test_two_workers_overlap_keep_the_budget_and_are_reproducible(tmp_path):
    m, table = _table(tmp_path)
    tpe, median = TPE, MEDIAN
    run = m.simulate(table, tpe, median, seed=3, trials=20, workers=2, name="tpe+median")
    assert len(run["trials"]) == 20
    assert {t["state"] for t in run["trials"]} == {"COMPLETE", "PRUNED"}
    for t in run["trials"]:  # a pruned trial stopped after its warm-up, before its last epoch
        assert (t["epochs"] == EPOCHS) == (t["state"] == "COMPLETE")
        assert t["state"] == "COMPLETE" or 2 <= t["epochs"] < EPOCHS
    # two clocks: the trials' spans overlap, so the finished order is not the asked order
    assert [t["number"] for t in run["trials"]] != sorted(t["number"] for t in run["trials"])
    assert m.simulate(table, tpe, median, seed=3, trials=20, workers=2, name="tpe+median") == run
    other = m.simulate(table, tpe, median, seed=4, trials=20, workers=2, name="tpe+median")
    assert [t["params"] for t in other["trials"]] != [t["params"] for t in run["trials"]]
    # the service's pruners, built from the study file's keys: none stops nothing, a high floor stops more
    unpruned = m.simulate(table, tpe, {"name": "none"}, seed=3, trials=20, workers=2, name="tpe")
    assert m.eff.total_epochs(unpruned) == 20 * EPOCHS > m.eff.total_epochs(run)
    floor = m.simulate(table, tpe, {**median, "floor": 0.95}, seed=3, trials=20, workers=2, name="tpe+median")
    assert m.eff.total_epochs(floor) < m.eff.total_epochs(run)


def test_fresh_rows_give_no_trial_of_a_run_a_row_it_drew_before(tmp_path):
    m, table = _table(tmp_path)
    again = m.simulate(table, TPE, MEDIAN, seed=3, trials=40, workers=1, name="tpe+median")
    assert again["repeats"] > 0  # TPE goes back to the best rows: answered by the same rows twice
    fresh = m.simulate(table, TPE, MEDIAN, seed=3, trials=40, workers=1, name="tpe+median", fresh=True)
    assert fresh["repeats"] == 0
    # skip: the nearest row apart from the skipped ones; with every row skipped, the nearest all the same
    first = table.nearest(table.rows[0]["params"])
    z = np.asarray(table._encode(table.rows[0]["params"]))
    order = np.argsort((((table.x - z) * table.weights) ** 2).sum(1))
    assert first == order[0] == 0 and table.nearest(table.rows[0]["params"], {0}) == order[1]
    assert table.nearest(table.rows[0]["params"], {0, int(order[1])}) == order[2]
    assert table.nearest(table.rows[0]["params"], set(range(len(table.rows)))) == 0


@pytest.mark.slow
def test_cli_prints_both_targets_per_cell_and_the_tally(tmp_path):
    _records(tmp_path / "pool" / "t1-w1" / "runs")
    _records(tmp_path / "later" / "t1-w2" / "runs", n=30, seed=1)  # configurations the table does not hold
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_surrogate.py"), "--pool",
                        str(tmp_path / "pool"), "--held-out", str(tmp_path / "later"), "--tasks", "t1",
                        "--epochs", str(EPOCHS), "--trials", "12",
                        "--workers", "1,2", "--seeds", "2", "--jobs", "1", "--fresh", "--set",
                        "tpe*.sampler.n_startup_trials=4", "--variant", "w2=tpe+median",
                        "--set", "w2.pruner.n_warmup_steps=2"],
                       cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "t1: 120 recorded configurations" in r.stdout
    assert "t1: held out: 30 completed configurations the table does not hold" in r.stdout
    assert "Rows: --fresh" in r.stdout and "Trials answered by a row their run had drawn before" in r.stdout
    for w in (1, 2):
        assert f"### t1, 12 trials, {w} worker(s)" in r.stdout
    rows = [line for line in r.stdout.splitlines() if line.startswith(("| tpe+median | t1 | 12 |", "| w2 | t1 | 12 |"))]
    assert len(rows) == 4 and all(line.endswith("% |") for line in rows), r.stdout
    assert "- tpe+median: both targets hold in" in r.stdout and "of 2 cells" in r.stdout
    saved = json.loads((tmp_path / "pool" / "surrogate" / "surrogate.json").read_text())
    assert set(saved["cells"]) == {"t1|12|1", "t1|12|2"} and saved["fresh"] is True
    # a second run does not replace the first one's results by default
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_surrogate.py"), "--pool",
                            str(tmp_path / "pool"), "--tasks", "t1", "--epochs", str(EPOCHS), "--seeds", "1"],
                           cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert json.loads((tmp_path / "pool" / "surrogate" / "surrogate.json").read_text()) == saved
