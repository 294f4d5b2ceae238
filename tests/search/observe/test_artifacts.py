"""Trial artifacts in Optuna's artifact store: every finished trial's charts and metrics.json, the top k's
checkpoints (the others removed), the named metric, and `search dashboard` serving the store. On SQLite: the
artifacts go through Optuna's public artifact API and the study lock, which other tests run on both stores."""

from __future__ import annotations

import json
import math
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.artifacts import get_all_artifact_meta
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from clitools import search_bg
from pngs import open_chart
from search import load_study
from search.observe import KEPT_ATTR, LOCATION_ATTR, open_store, served_location
from search.store import open_storage
from search.workers import open_study, work
from studygen import write_study

CHARTS = {"confusion_matrix.png", "per_class_f1.png", "learning_curves.png"}
# trial 1 fails at its 2nd epoch (a metrics.json from the 1st is there); 1e-7 cannot learn and is pruned once
# three trials completed; the others complete or are pruned, whatever they reach
LRS = (0.01, 0.02, 0.005, 0.015, 1.0e-7, 0.03, 0.008)
FAILING = 1


def _study_file(tmp: Path, name: str, **kw) -> Path:
    path = write_study(tmp, name, **kw)
    raw = yaml.safe_load(path.read_text())
    raw["artifacts"] = {"keep_top_k": 2}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A study of 6 finished trials (and one failed) with keep_top_k: 2, run by one worker in this process."""
    import training.loop as loop

    tmp = tmp_path_factory.mktemp("artifacts")
    url = f"sqlite:///{tmp / 'studies.db'}"
    path = _study_file(tmp, "arts", n_trials=6, space={"optimizer.lr": {"low": 1.0e-7, "high": 3.0e-2, "log": True}},
                       pruner={"name": "median", "n_startup_trials": 3, "n_warmup_steps": 0})
    sc = load_study(str(path))
    study = open_study(sc, open_storage(url), url)
    for lr in LRS:
        study.enqueue_trial({"optimizer.lr": lr})
    real_epoch, epochs = loop.train_one_epoch, {}

    def epoch_that_diverges(step_fn, loader, *a, **k):  # the failing trial's 2nd epoch: what an exploding step gives
        lr = round(a[1].param_groups[0]["initial_lr"], 9)
        epochs[lr] = epochs.get(lr, 0) + 1
        loss, seen, bad = real_epoch(step_fn, loader, *a, **k)
        return (math.nan, seen, None) if lr == LRS[FAILING] and epochs[lr] == 2 else (loss, seen, bad)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "train_one_epoch", epoch_that_diverges)
        work(sc, url, n_trials=6, output_root=tmp / "runs", use_wandb=False, worker_index=0)
    storage = open_storage(url)
    return tmp, storage, optuna.load_study(study_name="arts", storage=storage)


def _metas(trial, storage) -> dict[str, str]:
    return {m.filename: m.artifact_id for m in get_all_artifact_meta(trial, storage=storage)}


def _read(store, artifact_id: str) -> bytes:
    with store.open_reader(artifact_id) as f:
        return f.read()


def test_the_objective_is_named_macro_f1(finished):
    _, _, study = finished
    assert study.metric_names == ["macro_f1"]


def test_every_finished_trial_has_its_charts_and_metrics(finished):
    tmp, storage, study = finished
    store = open_store(str(tmp / "runs" / "artifacts"))
    trials = study.get_trials()
    assert study.user_attrs[LOCATION_ATTR] == str((tmp / "runs" / "artifacts").resolve())
    assert trials[FAILING].state == TrialState.FAIL and "non-finite" in trials[FAILING].user_attrs["fail_reason"]
    assert TrialState.PRUNED in {t.state for t in trials} and TrialState.COMPLETE in {t.state for t in trials}
    for t in trials:
        names = _metas(t, storage)
        assert CHARTS | {"metrics.json"} <= set(names), f"trial {t.number} ({t.state.name}): {sorted(names)}"
        for chart in CHARTS:
            open_chart(_read(store, names[chart]))
        stored = json.loads(_read(store, names["metrics.json"]))
        assert stored == json.loads((Path(t.user_attrs["output_dir"]) / "metrics.json").read_text())
        assert stored["epochs_run"] == (1 if t.state != TrialState.COMPLETE else 2)
        # its best epoch's val mistakes as images (every trial here makes some after two epochs)
        cm = stored["confusion_matrix"]
        wrong = sum(map(sum, cm)) - sum(cm[i][i] for i in range(len(cm)))
        assert wrong > 0 and "errors.png" in names, f"trial {t.number}: {sorted(names)}"
        open_chart(_read(store, names["errors.png"]))


def test_the_best_two_keep_their_checkpoints_and_no_other_stays(finished):
    tmp, storage, study = finished
    folder = tmp / "runs" / "artifacts"
    store = open_store(str(folder))
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    best_two = sorted(complete, key=lambda t: (-t.value, t.number))[:2]
    in_store, uploaded = {}, 0
    for t in study.get_trials():
        checkpoint = _metas(t, storage).get("best.pt")
        if checkpoint is None:
            continue
        uploaded += 1
        try:
            in_store[t.number] = _read(store, checkpoint)
        except ArtifactNotFound:
            pass  # uploaded while in the top 2, removed when it dropped out
    assert uploaded > 2, "the test must see a checkpoint drop out of the top 2"
    assert sorted(in_store) == sorted(t.number for t in best_two)
    for t in best_two:
        assert in_store[t.number] == (Path(t.user_attrs["output_dir"]) / "best.pt").read_bytes()
    assert sorted(study.user_attrs[KEPT_ATTR]) == sorted(str(t.number) for t in best_two)
    # the folder holds the charts and metrics of every trial and those two checkpoints, nothing else
    every = {i for t in study.get_trials() for name, i in _metas(t, storage).items() if name != "best.pt"}
    kept = {i for ids in study.user_attrs[KEPT_ATTR].values() for i in ids}
    assert {p.name for p in folder.iterdir()} == every | kept


def test_a_cross_validated_trial_sums_its_folds_matrices_and_keeps_each_folds_files(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    path = _study_file(tmp_path, "cvarts", n_trials=1, epochs=1, space={})
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "cv": {"folds": 2}}, sort_keys=False))
    work(load_study(str(path)), url, output_root=tmp_path / "runs", use_wandb=False, worker_index=0)
    storage = open_storage(url)
    (trial,) = optuna.load_study(study_name="cvarts", storage=storage).get_trials()
    assert trial.state == TrialState.COMPLETE
    names = _metas(trial, storage)
    folds = [f"fold-{i}" for i in range(2)]
    assert set(names) == {"confusion_matrix.png", "per_class_f1.png", *(f"learning_curves_{f}.png" for f in folds),
                          *(f"metrics_{f}.json" for f in folds), *(f"best_{f}.pt" for f in folds), "errors.png"}
    store = open_store(str(tmp_path / "runs" / "artifacts"))
    for f in folds:
        run = Path(trial.user_attrs["output_dir"]) / f
        assert _read(store, names[f"metrics_{f}.json"]) == (run / "metrics.json").read_bytes()
        assert _read(store, names[f"best_{f}.pt"]) == (run / "best.pt").read_bytes()


def test_the_dashboard_defaults_to_the_store_the_studies_recorded(tmp_path, monkeypatch):
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    monkeypatch.chdir(tmp_path)
    assert served_location(storage, None) == (None, [])  # nothing recorded, no ./runs/artifacts
    (tmp_path / "runs" / "artifacts").mkdir(parents=True)
    assert served_location(storage, None) == (str((tmp_path / "runs" / "artifacts").resolve()), [])
    for name, where in (("old", "/data/old-artifacts"), ("new", "/data/new-artifacts")):
        optuna.create_study(study_name=name, storage=storage).set_user_attr(LOCATION_ATTR, where)
    assert served_location(storage, None) == ("/data/new-artifacts", ["/data/old-artifacts"])
    assert served_location(storage, str(tmp_path)) == (str(tmp_path), [])


def test_search_dashboard_serves_the_artifacts_from_the_folder_it_is_given(finished):
    """The store moved elsewhere: `--artifacts` points the dashboard there, and a trial's chart comes back."""
    tmp, storage, study = finished
    best = study.best_trial
    study_id = storage.get_study_id_from_name("arts")
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, best.number)
    chart = _metas(best, storage)["confusion_matrix.png"]
    recorded, moved = tmp / "runs" / "artifacts", tmp / "moved-artifacts"
    shutil.copytree(recorded, moved)
    recorded.rename(tmp / "hidden")  # the recorded default is gone: only --artifacts can serve the chart
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp / "dash.log"
    p = search_bg("dashboard", "--storage", storage.url, "--port", str(port), "--artifacts", str(moved), cwd=tmp,
                  log=log)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/artifacts/{study_id}/{trial_id}/{chart}",
                                            timeout=2) as resp:
                    body, kind = resp.read(), resp.headers["Content-Type"]
                break
            except OSError:
                assert time.time() < deadline and p.poll() is None, log.read_text()
                time.sleep(0.3)
        assert kind == "image/png"
        open_chart(body)
        assert f"artifacts: {moved}" in log.read_text()
    finally:
        p.terminate()
        p.wait(10)
        (tmp / "hidden").rename(recorded)
