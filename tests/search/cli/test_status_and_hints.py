"""What a new user reads: `search status` as a table (4 significant digits, params as key=value, a plain line for
an empty study), `search run` saying at once that a study already holds its budget, a warning for a pruner
that can never act, the `next:` hint naming a command the user can type, and auto batch sizes that say why."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from incli import run_main
from search import load_study
from search.cli import activate_hint, command_name
from search.store import open_storage
from search.study import study_warnings
from studygen import write_study

ROOT = Path(__file__).resolve().parents[3]


def _store_with_trials(tmp_path: Path, name: str, n: int) -> str:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize")
    dists = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True), "optimizer.name": CategoricalDistribution(
        ["adamw", "sgd"])}
    for i in range(n):
        study.add_trial(create_trial(value=0.912345678 + i / 1000, params={"optimizer.lr": 0.00123456789 * (i + 1),
                                                                           "optimizer.name": "adamw"},
                                     distributions=dists, state=TrialState.COMPLETE))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"optimizer.lr": 0.05, "optimizer.name": "sgd"},
                                 distributions=dists, user_attrs={"fail_reason": "out of memory"}))
    return url


def test_status_is_a_table_with_four_significant_digits(tmp_path, capfd, monkeypatch):
    url = _store_with_trials(tmp_path, "st", 3)
    r = run_main(["status", "--study", "st", "--storage", url], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "study st: 3 finished (3 complete, 1 fail)"
    assert lines[1] == "best: trial 2, macro_f1 0.9143: optimizer.lr=0.003704 optimizer.name=adamw"
    assert lines[2].split() == ["trial", "state", "macro_f1", "seconds", "params", "(or", "why", "it", "failed)"]
    assert lines[3].split()[:3] == ["0", "complete", "0.9123"] and "optimizer.lr=0.001235" in lines[3]
    assert lines[-1].endswith("optimizer.lr=0.05 optimizer.name=sgd  [out of memory]")
    assert "{" not in r.stdout and "0.00123456789" not in r.stdout  # no dict reprs, no 17-digit floats


def test_status_of_an_empty_study_says_so(tmp_path, capfd, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="empty", storage=open_storage(url))
    r = run_main(["status", "--study", "empty", "--storage", url], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0 and r.stdout.strip() == "study empty: no trials yet"


def test_a_budget_below_the_finished_trials_says_so_at_once(tmp_path, capfd, monkeypatch):
    path = write_study(tmp_path, "held", n_trials=2)
    sc = load_study(str(path))
    url = _store_with_trials(tmp_path, "held", 3)
    optuna.load_study(study_name="held", storage=open_storage(url)).set_user_attr("space_hash", sc.space_hash)
    t0 = time.perf_counter()
    r = run_main(["run", "--study", str(path), "--storage", url, "--n-trials", "2", "--no-wandb"], cwd=tmp_path,
                 capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - t0 < 8, "it waited for workers that had nothing to do"
    assert "study 'held' already holds 3 finished trials, so a budget of 2 runs none" in r.stdout
    assert "raise --n-trials above 3 (e.g. --n-trials 5)" in r.stdout
    assert "worker" not in r.stdout and "done:" not in r.stdout
    assert "n_trials" not in optuna.load_study(study_name="held", storage=open_storage(url)).user_attrs


def test_a_shipped_study_shortened_below_its_pruner_warm_up_gets_a_warning(tmp_path):
    raw = yaml.safe_load((ROOT / "studies" / "apple-effb4.yaml").read_text())
    raw["training"]["train"]["epochs"] = 3
    path = tmp_path / "apple-short.yaml"
    path.write_text(yaml.safe_dump(raw))
    warnings = study_warnings(load_study(str(path)), 100)
    assert len(warnings) == 1
    assert "pruner median can first prune at epoch 4, but a trial trains 3 epochs" in warnings[0]
    assert "set pruner.n_warmup_steps below 2" in warnings[0]
    assert study_warnings(load_study(str(ROOT / "studies" / "apple-effb4.yaml")), 100) == []
    raw["training"]["train"]["epochs"] = 20
    raw["stop"] = {"patience_trials": 30}
    path.write_text(yaml.safe_dump(raw))
    assert [w for w in study_warnings(load_study(str(path)), 20) if "stop.patience_trials = 30" in w]


def test_search_run_prints_the_warning_and_a_hint_the_user_can_type(tmp_path, capfd, monkeypatch):
    path = write_study(tmp_path, "warn", epochs=2, n_trials=1, limit=60,
                       pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 3})
    r = run_main(["run", "--study", str(path), "--storage", f"sqlite:///{tmp_path / 'studies.db'}", "--no-wandb"],
                 cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    assert "warning: " in r.stdout and "it will never stop a trial" in r.stdout
    assert "next: search best --study warn --export best.yaml" in r.stdout


def test_the_hint_names_the_venvs_command_when_it_is_not_on_path(tmp_path, monkeypatch):
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "search").write_text("")
    (venv / "activate").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [".venv/bin/search", "run"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert command_name() == ".venv/bin/search"
    assert "source .venv/bin/activate" in activate_hint(command_name())
    monkeypatch.setenv("PATH", f"{venv}:/usr/bin")
    (venv / "search").chmod(0o755)
    assert command_name() == "search" and activate_hint("search") == ""


def test_an_auto_batch_says_what_it_picked_and_why(tmp_path, capfd, monkeypatch):
    cfg = {"data": {"source": "digits", "limit": 60, "image_size": 8}, "model": {"name": "test_resnet"},
           "train": {"epochs": 1, "batch_size": "auto", "device": "cpu", "num_threads": 1}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    r = run_main(["train", "--config", "cfg.yaml"], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    assert ("train.batch_size: auto -> 8 (64 on CPU; lowered to keep at least 8 steps per epoch of 48 train "
            "images)") in r.stdout


def test_the_dashboard_on_a_busy_port_says_so_before_announcing_a_server(tmp_path, capfd, monkeypatch):
    import socket

    url = _store_with_trials(tmp_path, "st", 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_main(["dashboard", "--storage", url, "--port", str(port)], cwd=tmp_path, capfd=capfd,
                     monkeypatch=monkeypatch)
    assert r.returncode == 1 and r.stderr.count("error:") == 1
    assert f"cannot serve on 127.0.0.1:{port}" in r.stderr and "pick another --port" in r.stderr
    assert "optuna-dashboard for" not in r.stdout


def test_a_report_of_a_study_without_trials_is_an_error(tmp_path, capfd, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="empty", storage=open_storage(url))
    r = run_main(["report", "--study", "empty", "--storage", url, "--out", "report"], cwd=tmp_path, capfd=capfd,
                 monkeypatch=monkeypatch)
    assert r.returncode == 1 and "study 'empty' holds no trial yet" in r.stderr
    assert not (tmp_path / "report").exists()
