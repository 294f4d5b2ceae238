"""No trial lost, no worker killed by one bad trial: OOM, NaN, data-worker crash, SIGTERM, database restart,
bounded connections, no secret in any output."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from clitools import checkpoint_epoch, cli_env, search, search_bg, study_trials
from search import load_study
from search.store import open_storage
from search.workers import open_study, work
from studygen import write_study

pytestmark = pytest.mark.slow


def test_bad_trials_fail_with_a_reason_and_the_worker_goes_on(tmp_path, monkeypatch):
    """Trial 0 hits CUDA OOM, trial 1 a NaN loss, trial 2 a crash in a DataLoader worker; the worker then
    finishes its budget with good trials."""
    import training.data.loader as loader
    import training.loop as loop

    url = f"sqlite:///{tmp_path / 's.db'}"
    path = write_study(tmp_path, "bad", n_trials=2, epochs=1, max_failures=5,
                       space={"optimizer.lr": {"low": 1.0e-3, "high": 3.0e-2, "log": True}},
                       extra_training={"data": {"num_workers": 1},
                                       "augment": {"train": [{"__class_fullname__": "ToGray", "p": 1.0}]}})
    sc = load_study(str(path))
    st = open_study(sc, open_storage(url), url)
    st.set_user_attr("n_trials", 2)
    st.enqueue_trial({"optimizer.lr": 0.01})   # 0: OOM
    st.enqueue_trial({"optimizer.lr": 0.02})   # 1: NaN loss
    st.enqueue_trial({"optimizer.lr": 0.01})   # 2: data worker crash
    real_epoch, real_getitem = loop.train_one_epoch, loader._AlbuDataset.__getitem__
    calls = {"n": 0}

    def flaky_epoch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        if calls["n"] == 2:  # what an exploding step reports; fit() must notice and fail the trial
            real_epoch(*a, **k)
            return float("nan"), 1, None
        return real_epoch(*a, **k)

    def crashing_getitem(self, i):
        if os.environ.get("CRASH_DATA") == "1":
            raise RuntimeError("decoder exploded (simulated)")
        return real_getitem(self, i)

    monkeypatch.setattr(loop, "train_one_epoch", flaky_epoch)
    monkeypatch.setattr(loader._AlbuDataset, "__getitem__", crashing_getitem)

    import search.workers._trial as objective

    real_run = objective.run_trial

    def run(trial, ctx):
        os.environ["CRASH_DATA"] = "1" if trial.number == 2 else "0"
        return real_run(trial, ctx)

    monkeypatch.setattr("search.workers._worker.run_trial", run)
    work(sc, url, n_trials=2, output_root=tmp_path / "runs", use_wandb=False, worker_index=0)
    t = study_trials(url, "bad")
    assert [x.state for x in t[:3]] == [TrialState.FAIL] * 3
    assert "out of memory" in t[0].user_attrs["fail_reason"]
    assert "loss became non-finite at epoch 1" in t[1].user_attrs["fail_reason"]
    assert "decoder exploded" in t[2].user_attrs["fail_reason"]
    assert sum(x.state == TrialState.COMPLETE for x in t) == 2  # the worker went on to meet its budget


def test_sigterm_marks_the_running_trial_and_requeues_it(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = write_study(tmp_path, "term", n_trials=1, epochs=8, limit=1200,
                        space={"optimizer.lr": {"low": 3.0e-3, "high": 1.0e-2, "log": True}})
    w = search_bg("worker", "--study", str(study), "--storage", url, "--no-wandb", "--worker-index", "0",
                  cwd=tmp_path, log=tmp_path / "w.log")
    end = time.time() + 120
    while time.time() < end:
        try:
            running = [t for t in study_trials(url, "term")
                       if t.state == TrialState.RUNNING and checkpoint_epoch(t) >= 1]
        except Exception:
            running = []
        if running:
            break
        time.sleep(0.3)
    assert running, (tmp_path / "w.log").read_text()
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=60) != 0
    t = study_trials(url, "term")
    assert not [x for x in t if x.state == TrialState.RUNNING], "a stopped worker left its trial RUNNING"
    assert t[0].state == TrialState.FAIL and "signal" in t[0].user_attrs["fail_reason"]
    assert t[1].state == TrialState.WAITING and t[1].params == t[0].params
    r = search("worker", "--study", str(study), "--storage", url, "--no-wandb", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    t = study_trials(url, "term")
    assert t[1].state == TrialState.COMPLETE and t[1].user_attrs["resumed_at_epoch"] >= 1


def test_ctrl_c_on_run_with_workers_requeues_each_running_trial_once(pg_url, tmp_path):
    """Ctrl-C reaches every process of the terminal's group: `search run --workers 2` and both workers (each
    also gets it forwarded by the launcher). Each running trial is re-queued exactly once (under the Postgres
    advisory lock; SQLite's file lock is exercised by the SIGTERM test above), none is left RUNNING, and the
    command exits 143 with the resume hint."""
    url = pg_url
    study = write_study(tmp_path, "ctrlc", n_trials=4, epochs=30, limit=1200,
                        space={"optimizer.lr": {"low": 3.0e-3, "high": 1.0e-2, "log": True}})
    log = tmp_path / "run.log"
    with open(log, "w") as fh:
        run = subprocess.Popen([sys.executable, "-m", "search", "run", "--study", str(study), "--storage", url,
                                "--workers", "2", "--no-wandb"], cwd=tmp_path, env=cli_env(), stdout=fh,
                               stderr=subprocess.STDOUT, start_new_session=True)  # its own group: the "terminal"
    end = time.time() + 180
    running = []
    while time.time() < end and len(running) < 2:
        try:
            running = [t for t in study_trials(url, "ctrlc") if t.state == TrialState.RUNNING and t.intermediate_values]
        except Exception:
            running = []
        time.sleep(0.3)
    assert len(running) == 2, log.read_text()
    os.killpg(run.pid, signal.SIGINT)
    assert run.wait(timeout=90) == 143, log.read_text()
    assert "rerun the command to resume" in log.read_text()
    t = study_trials(url, "ctrlc")
    assert not [x for x in t if x.state == TrialState.RUNNING], "a stopped worker left its trial RUNNING"
    stopped = [x for x in t if x.state == TrialState.FAIL]
    assert {x.number for x in stopped} >= {x.number for x in running}
    waiting = [x for x in t if x.state == TrialState.WAITING]
    for x in running:  # re-queued once: exactly one WAITING retry points back at it
        assert sum(w.system_attrs.get("failed_trial") == x.number for w in waiting) == 1, log.read_text()


def _pg_restart():
    ver = sorted(os.listdir("/etc/postgresql"))[-1]
    base = ["pg_ctlcluster", "--skip-systemctl-redirect", ver, "main"]
    subprocess.run(base + ["stop", "-m", "fast"], check=True, capture_output=True)
    time.sleep(4)
    subprocess.run(base + ["start"], check=True, capture_output=True)


def test_workers_survive_a_postgres_restart_without_losing_trials(pg_url, tmp_path):
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but this machine cannot restart its Postgres (no pg_ctlcluster)")
        pytest.skip("no pg_ctlcluster to restart Postgres")
    study = write_study(tmp_path, "outage", n_trials=6, epochs=3, limit=600, heartbeat=5)
    w = search_bg("worker", "--study", str(study), "--storage", pg_url, "--no-wandb", "--worker-index", "0",
                  cwd=tmp_path, log=tmp_path / "w.log")
    def one_complete():
        try:
            return any(t.state == TrialState.COMPLETE for t in study_trials(pg_url, "outage"))
        except KeyError:  # the worker has not created the study yet
            return False

    end = time.time() + 120
    while time.time() < end and not one_complete():
        time.sleep(0.5)
    _pg_restart()
    assert w.wait(timeout=400) == 0, (tmp_path / "w.log").read_text()[-3000:]
    log = (tmp_path / "w.log").read_text()
    assert "storage unreachable" in log and "reconnecting" in log
    t = study_trials(pg_url, "outage")
    assert sum(x.state in (TrialState.COMPLETE, TrialState.PRUNED) for x in t) == 6
    assert not [x for x in t if x.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_connections_per_worker_are_bounded(pg_url, pg_server, tmp_path):
    import sqlalchemy

    study = write_study(tmp_path, "conns", n_trials=8, epochs=1, limit=200)
    procs = [search_bg("worker", "--study", str(study), "--storage", pg_url, "--no-wandb", "--worker-index", str(i),
                       cwd=tmp_path, log=tmp_path / f"w{i}.log") for i in range(4)]
    db = pg_url.rsplit("/", 1)[1]
    peak = 0
    while any(p.poll() is None for p in procs):
        with pg_server.connect() as c:
            n = c.execute(sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"),
                          {"d": db}).scalar()
        peak = max(peak, n)
        time.sleep(0.2)
    assert [p.returncode for p in procs] == [0] * 4
    # one pooled connection each, a momentary second when a heartbeat meets a report, the lock's while held
    assert 0 < peak <= 4 * 2, f"{peak} connections for 4 workers"


def test_no_secret_in_output_exports_attrs_or_wandb(pg_url, tmp_path):
    # trust auth accepts any password, so a URL with a password works against the test server
    secret = "s3cret-pw-XYZ"
    url = pg_url.replace("postgres@", f"postgres:{secret}@")
    study = write_study(tmp_path, "sec", n_trials=1, epochs=1)
    r = search("run", "--study", str(study), "--storage", url, cwd=tmp_path, WANDB_API_KEY="")
    assert r.returncode == 0, r.stderr
    r2 = search("best", "--study", str(study), "--storage", url, "--export", "best.yaml", cwd=tmp_path)
    r3 = search("status", "--study", str(study), "--storage", url, "--json", cwd=tmp_path)
    bad = search("run", "--study", str(study), "--storage", url.replace("127.0.0.1:5432", "127.0.0.1:1"), cwd=tmp_path)
    assert bad.returncode != 0 and "***" in bad.stderr
    texts = [r.stdout, r.stderr, r2.stdout, r2.stderr, r3.stdout, bad.stdout, bad.stderr,
             (tmp_path / "best.yaml").read_text()]
    texts += [p.read_text(errors="ignore") for p in (tmp_path / "runs").rglob("*") if p.is_file() and p.suffix in
              (".yaml", ".json", ".log", ".wandb", ".txt")]
    t = study_trials(pg_url, "sec")[0]
    texts.append(repr(t.user_attrs) + repr(t.system_attrs))
    assert not [s for s in texts if secret in s]


def test_stop_signals_raise_once_note_the_second_and_restore_the_handlers(capfd):
    from search.workers import WorkerStopped
    from search.workers._worker import _stop_signals

    before = signal.getsignal(signal.SIGTERM)
    noted = False
    with _stop_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except WorkerStopped:  # the re-queue runs here; Ctrl-C's second copy must not interrupt it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            noted = True
    assert noted and "re-queuing the running trial" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # pytest's (or the caller's) handler is back


def test_requeue_of_a_stopped_trial_happens_once_even_when_repeated(tmp_path):
    """The re-queue is retried on store errors: a repeat after a lost reply must not queue a second retry."""
    from search.store import Hooks, Lease

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_seconds=10)
    study = optuna.create_study(study_name="rq", storage=storage, direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name("rq"), trial.number)
    lease = Lease(study, storage, trial, trial_id, Hooks())
    lease._requeue()  # it got as far as the re-queue, then the reply was lost
    lease._requeue_once()
    lease._requeue_once()
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    storage.engine.dispose()


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the live child processes of ``pid``."""
    out = {}
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_run_replaces_a_killed_worker_and_keeps_the_password_off_command_lines(pg_url, tmp_path):
    """`search run --workers 2`: a worker SIGKILLed mid-trial is replaced (its GPU would otherwise sit idle
    until the others finish), its trial is retried, the study ends with exactly its budget; the store's password
    never appears on a worker's command line (which `ps` shows to every user)."""
    secret = "s3cret-pw-ARGV"
    url = pg_url.replace("postgres@", f"postgres:{secret}@")  # trust auth accepts any password
    study = write_study(tmp_path, "respawn", n_trials=4, epochs=6, limit=600, heartbeat=1)
    log = tmp_path / "run.log"
    with open(log, "w") as fh:
        run = subprocess.Popen([sys.executable, "-m", "search", "run", "--study", str(study), "--storage", url,
                                "--workers", "2", "--no-wandb"], cwd=tmp_path, env=cli_env(), stdout=fh,
                               stderr=subprocess.STDOUT)
    end, victim = time.time() + 120, None
    while time.time() < end and victim is None:
        try:
            running = [t for t in study_trials(pg_url, "respawn")
                       if t.state == TrialState.RUNNING and t.intermediate_values]
        except KeyError:  # the study is not created yet
            running = []
        workers = _children(run.pid)
        if running and len(workers) == 2:
            assert not [c for c in workers.values() if secret in c], workers
            victim = next(p for p, c in workers.items() if "--worker-index 1" in c)
        time.sleep(0.2)
    assert victim is not None, log.read_text()
    os.kill(victim, signal.SIGKILL)
    assert run.wait(timeout=180) == 0, log.read_text()
    out = log.read_text()
    assert "worker 1 was killed (SIGKILL); starting a new one in its place" in out, out
    t = study_trials(pg_url, "respawn")
    finished = [x for x in t if x.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4 and not [x for x in t if x.state == TrialState.RUNNING], [x.state for x in t]
    assert [x for x in t if x.state == TrialState.FAIL], "the killed worker's trial was failed and retried"
