"""Parallel workers on one store (SQLite and the real Postgres): exact budgets, crash recovery, pruning,
export/retrain, Optuna's own CLI, W&B offline runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from clitools import checkpoint_epoch, search, search_bg, study_trials
from incli import run_main
from search.store import open_storage
from studygen import write_study

pytestmark = pytest.mark.slow


def test_three_workers_finish_exactly_n_trials(pg_url, tmp_path):
    """On Postgres, the store for parallel work. SQLite's exact budget under several workers is the demo's (two
    workers, tests/search/cli/test_demo.py) and the fault injection's (workers killed, tests/benchmarks)."""
    storage_url = pg_url
    study = write_study(tmp_path, "par", n_trials=7, epochs=2)
    cache = tmp_path / "cache"  # empty: the first trial of the first worker decodes, everyone else reuses
    procs = [search_bg("worker", "--study", str(study), "--storage", storage_url, "--n-trials", "7",
                       "--worker-index", str(i), cwd=tmp_path, log=tmp_path / f"w{i}.log",
                       SEARCH_CACHE_DIR=str(cache)) for i in range(3)]
    codes = [p.wait(timeout=300) for p in procs]
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(3)]
    assert codes == [0, 0, 0], logs
    trials = study_trials(storage_url, "par")
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 7
    assert len({t.number for t in trials}) == len(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum("trial" in log and "COMPLETE" in log for log in logs) >= 2, "work was not shared between workers"
    assert sum(log.count("decoded 300 images") for log in logs) == 1, "the data was decoded more than once"
    assert len(list(cache.glob("*.npy"))) == 1
    # W&B: one offline run per trial, holding its per-epoch metrics and final state
    from wandb_records import read_run

    runs = [read_run(f) for f in (tmp_path / "runs" / "wandb").glob("offline-run-*/run-*.wandb")]
    by_name = {r["name"]: r for r in runs}
    for t in finished:
        r = by_name[f"trial-{t.number}"]
        assert r["group"] == "par" and r["project"] == "par"
        assert r["config"]["optimizer.lr"] == pytest.approx(t.params["optimizer.lr"])
        epochs = [h for h in r["history"] if "macro_f1" in h]
        assert [h["epoch"] for h in epochs] == [1, 2]
        assert epochs[-1]["macro_f1"] == pytest.approx(t.intermediate_values[2])
        assert r["summary"]["state"] == t.state.name


def test_resume_never_duplicates_and_tops_up(tmp_path, capfd, monkeypatch):
    """In this process (each `search run` is the whole command; the store is what carries the study over)."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = write_study(tmp_path, "resume", n_trials=2, epochs=1)

    def run(n: str):
        r = run_main(["run", "--study", str(study), "--storage", url, "--n-trials", n, "--no-wandb"], cwd=tmp_path,
                     capfd=capfd, monkeypatch=monkeypatch, env={"SEARCH_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr

    for _ in range(2):
        run("2")
    assert len(study_trials(url, "resume")) == 2
    run("3")
    assert [t.state for t in study_trials(url, "resume")] == [TrialState.COMPLETE] * 3


def _wait_for(pred, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkilled_worker_trial_is_failed_retried_and_resumed(pg_url, tmp_path):
    """On Postgres; on SQLite, benchmarks/fault_injection.py's kills lose no trial (tests/benchmarks), and the
    resume path is the store's heartbeat, the same code on both."""
    storage_url = pg_url
    study = write_study(tmp_path, "crash", n_trials=2, epochs=6, limit=1000, heartbeat=1,
                        space={"optimizer.lr": {"low": 3.0e-3, "high": 1.0e-2, "log": True}})
    a = search_bg("worker", "--study", str(study), "--storage", storage_url, "--no-wandb", "--worker-index", "0",
                  cwd=tmp_path, log=tmp_path / "a.log")

    def mid_trial():
        try:
            ts = study_trials(storage_url, "crash")
        except Exception:
            return None
        return [t for t in ts if t.state == TrialState.RUNNING and checkpoint_epoch(t) >= 2]

    victim = _wait_for(mid_trial, 120, "a trial with its epoch-2 checkpoint")[0]
    a.send_signal(signal.SIGKILL)
    a.wait()
    b = search_bg("worker", "--study", str(study), "--storage", storage_url, "--no-wandb", "--worker-index", "1",
                  cwd=tmp_path, log=tmp_path / "b.log")
    assert b.wait(timeout=300) == 0, (tmp_path / "b.log").read_text()
    trials = {t.number: t for t in study_trials(storage_url, "crash")}
    assert trials[victim.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    retry = retries[0]
    assert retry.params == victim.params
    assert retry.user_attrs["resumed_at_epoch"] >= 2, "retry trained from zero instead of the checkpoint"
    assert sorted(retry.intermediate_values) == list(range(1, 7)), "pruner must see one curve"
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 2
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]


def test_median_pruner_prunes_a_weak_trial(storage_url, tmp_path):
    from search import load_study
    from search.workers import open_study, work

    path = write_study(tmp_path, "prune", epochs=4, n_trials=4,
                       space={"optimizer.lr": {"low": 1.0e-7, "high": 3.0e-2, "log": True}},
                       pruner={"name": "median", "n_startup_trials": 3, "n_warmup_steps": 0})
    sc = load_study(str(path))
    st = open_study(sc, open_storage(storage_url), storage_url)
    for lr in (0.01, 0.02, 0.015, 1.0e-7):  # three good trials, then one that cannot learn
        st.enqueue_trial({"optimizer.lr": lr})
    work(sc, storage_url, n_trials=4, output_root=tmp_path / "runs", use_wandb=False, worker_index=0)
    trials = study_trials(storage_url, "prune")
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE] * 3
    weak = trials[3]
    assert weak.params["optimizer.lr"] == pytest.approx(1e-7)
    assert weak.state == TrialState.PRUNED
    assert max(weak.intermediate_values) < 4, "pruned before the last epoch"


def test_best_export_retrains_to_the_same_macro_f1(tmp_path, capfd, monkeypatch):
    """On SQLite only (export reads the best trial through the same Optuna API on every store; the suite's time
    goes to what differs between stores)."""
    storage_url = f"sqlite:///{tmp_path / 'studies.db'}"
    # no train.num_threads: the worker runs on its share of the CPU (SEARCH_NUM_THREADS=1 here, as under
    # `search run --workers 2` on 2 cores), which the export names for the replay but does not pin
    study = write_study(tmp_path, "exp", n_trials=2, epochs=3, extra_training={"train": {"num_threads": None}})
    def search_here(*args: str):  # in this process: the store and the files carry each step over
        r = run_main(list(args), cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch, env={"SEARCH_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr
        return r

    search_here("run", "--study", str(study), "--storage", storage_url, "--no-wandb")
    search_here("best", "--study", str(study), "--storage", storage_url, "--export", "best.yaml")
    exported = (tmp_path / "best.yaml").read_text()
    assert "split_seed" in exported and "epochs: 3" in exported
    assert yaml.safe_load(exported)["train"]["num_threads"] is None, "the worker's thread share leaked into the export"
    assert "# retrain: search train --config best.yaml --threads 1" in exported
    best = max((t for t in study_trials(storage_url, "exp") if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    r = search_here("train", "--config", "best.yaml", "--threads", "1", "--output", "retrain", "--json")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["macro_f1"] == best.value  # exact on CPU with the same seed and split
    split_trial = json.loads((Path(best.user_attrs["output_dir"]) / "split.json").read_text())
    split_retrain = json.loads((tmp_path / "retrain" / "split.json").read_text())
    assert split_trial["val"] == split_retrain["val"]
    # the export names the best epoch; a full-data retrain trains that many epochs on every image
    assert f"full_data_epochs: {best.user_attrs['best_epoch']}" in exported
    r = run_main(["train", "--config", "best.yaml", "--full-data", "--output", "full", "--json"], cwd=tmp_path,
                 capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    full = json.loads(r.stdout.strip().splitlines()[-1])
    assert full["epochs_run"] == best.user_attrs["best_epoch"] and full["n_val"] == 0
    assert full["n_train"] == len(split_trial["train"]) + len(split_trial["val"]) and full["macro_f1"] is None


def test_optunas_own_cli_reads_our_study(tmp_path, capfd, monkeypatch):
    """On SQLite, the default store (Postgres studies are read through the same Optuna storage classes, which the
    other tests exercise on both). The study is made in this process; Optuna's CLI reads it in its own."""
    storage_url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = write_study(tmp_path, "ocli", n_trials=1, epochs=1)
    assert run_main(["run", "--study", str(study), "--storage", storage_url, "--no-wandb"], cwd=tmp_path, capfd=capfd,
                    monkeypatch=monkeypatch).returncode == 0
    optuna_cli = Path(sys.executable).with_name("optuna")
    r = subprocess.run([str(optuna_cli), "trials", "--study-name", "ocli", "--storage", storage_url, "-f", "json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 1 and rows[0]["state"] == "COMPLETE"
    value = rows[0]["value"]  # the study names its metric, and Optuna's CLI shows the name
    assert list(value) == ["macro_f1"] and 0 < value["macro_f1"] <= 1


def test_dashboard_serves_the_study_on_localhost(tmp_path):
    import socket
    import urllib.request

    url = f"sqlite:///{tmp_path / 'd.db'}"
    study = write_study(tmp_path, "dash", n_trials=1, epochs=1)
    assert search("run", "--study", str(study), "--storage", url, "--no-wandb", cwd=tmp_path).returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = search_bg("dashboard", "--storage", url, "--port", str(port), cwd=tmp_path, log=tmp_path / "dash.log")
    try:
        def fetch():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as resp:
                    return json.loads(resp.read())
            except OSError:
                return None

        body = _wait_for(fetch, 60, "the dashboard")
        assert [s["study_name"] for s in body["study_summaries"]] == ["dash"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard", timeout=5) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()
        out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in out and f"0.0.0.0:{port}" not in out
    finally:
        p.terminate()
        p.wait(10)
