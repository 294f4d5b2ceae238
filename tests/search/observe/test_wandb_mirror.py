"""Each trial's W&B run, read back from its offline files: the full resolved config as dotted keys with the
searched parameters named, per-class F1 every epoch, the best epoch's confusion matrix and per-class F1 tables,
and the state with its reason. On SQLite: the mirror reads the trial's run folder, not the store. The same trials'
TensorBoard runs (``--tensorboard``): the epochs' scalars and an HParams session each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from clitools import study_trials
from search import load_study
from search.store import open_storage
from search.workers import open_study, work
from studygen import write_study
from wandb_records import read_run

MISSING_WEIGHTS = "/nonexistent/weights.pth"  # the model cannot be built: the trial fails after its run began


def _runs(wandb_dir: Path) -> dict[str, tuple[dict, Path]]:
    """Each offline run by name: its records and its folder (where the logged tables' files are)."""
    out = {}
    for f in wandb_dir.glob("offline-run-*/run-*.wandb"):
        r = read_run(f)
        out[r["name"]] = (r, f.parent)
    return out


def _table(folder: Path, record: dict, key: str) -> dict:
    """A table logged as ``key``: its file under the run's files/ (the history row holds its path)."""
    return json.loads((folder / "files" / record[f"{key}/path"]).read_text())


@pytest.mark.slow  # four trials, each with its own W&B run
def test_each_trial_run_holds_the_full_config_per_class_f1_tables_and_outcome(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    path = write_study(tmp_path, "wb", epochs=2, n_trials=3,
                       space={"optimizer.lr": {"low": 1.0e-7, "high": 3.0e-2, "log": True},
                              "model.pretrained": {"choices": [False, MISSING_WEIGHTS]}},
                       pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0})
    sc = load_study(str(path))
    st = open_study(sc, open_storage(url), url)
    for lr, weights in ((0.01, False), (0.02, False), (0.01, MISSING_WEIGHTS), (1.0e-7, False)):
        st.enqueue_trial({"optimizer.lr": lr, "model.pretrained": weights})  # good, good, fails, cannot learn
    work(sc, url, n_trials=3, output_root=tmp_path / "runs", use_wandb=True, worker_index=0,
         tensorboard=tmp_path / "tb")
    trials = study_trials(url, "wb")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.PRUNED]
    runs = _runs(tmp_path / "runs" / "wandb")

    for t in trials:
        r, folder = runs[f"trial-{t.number}"]
        config = r["config"]
        # the full resolved config, one dotted key per field, and the searched parameters named
        resolved = t.user_attrs["config"]
        for section, fields in resolved.items():
            if not isinstance(fields, dict):
                assert config[section] == fields
                continue
            for name, value in fields.items():
                key = f"{section}.{name}"
                assert key in config or any(k.startswith(key + ".") for k in config), key
                if not isinstance(value, (dict, list)):
                    assert config[key] == value, key
        assert config["model.name"] == "test_resnet" and config["data.source"] == "digits"
        assert config["searched"] == ["model.pretrained", "optimizer.lr"]
        assert config["optimizer.lr"] == pytest.approx(t.params["optimizer.lr"])
        assert r["summary"]["state"] == t.state.name

    failed = runs["trial-2"][0]
    assert "weights" in failed["summary"]["reason"] and failed["summary"]["reason"] == trials[2].user_attrs[
        "fail_reason"]
    assert failed["exit_code"] == 1
    assert not [h for h in failed["history"] if "confusion_matrix_table/path" in h], "no epoch ran: no tables"
    pruned = runs["trial-3"][0]
    assert pruned["summary"]["reason"].startswith("pruned at epoch 1 by the median pruner: macro_f1")

    for t in (trials[0], trials[1], trials[3]):
        r, folder = runs[f"trial-{t.number}"]
        metrics = json.loads((Path(t.user_attrs["output_dir"]) / "metrics.json").read_text())
        classes = metrics["classes"]
        # per-class F1 every epoch, as the run's metrics.json recorded it
        epochs = [h for h in r["history"] if "epoch" in h]
        assert [h["epoch"] for h in epochs] == [e["epoch"] for e in metrics["history"]]
        for row, recorded in zip(epochs, metrics["history"]):
            for c in classes:
                f1 = recorded["per_class_f1"][c]
                assert row.get(f"per_class_f1/{c}") == (None if f1 is None else pytest.approx(f1)), (row["epoch"], c)
        # at the end: the best epoch's confusion matrix, with class names, and per-class F1
        [end] = [h for h in r["history"] if "confusion_matrix_table/path" in h]
        cm = _table(folder, end, "confusion_matrix_table")
        assert cm["columns"] == ["Actual", "Predicted", "nPredictions"]
        counts = {(a, p): n for a, p, n in cm["data"]}
        assert counts == {(classes[i], classes[j]): n for i, row in enumerate(metrics["confusion_matrix"])
                          for j, n in enumerate(row)}
        f1_table = _table(folder, end, "per_class_f1_table")
        assert f1_table["columns"] == ["class", "f1"]
        assert {c: v for c, v in f1_table["data"]} == pytest.approx(metrics["per_class_f1"])
        # and its most confident val mistakes as captioned images, as errors.png shows them
        from training.mistakes import MAX_SHOWN, mistakes

        shown = mistakes(Path(t.user_attrs["output_dir"]), MAX_SHOWN)
        assert shown, "two epochs on digits leave mistakes to show"
        assert end["errors/_type"] == "images/separated" and end["errors/count"] == len(shown)
        assert end["errors/captions"] == [m.caption.replace("\n", " | ") for m in shown]
        assert len(end["errors/filenames"]) == len(shown)

    _check_tensorboard(tmp_path / "tb" / "wb", trials)


def _check_tensorboard(root: Path, trials) -> None:
    """Each trial's TensorBoard run: macro-F1 per epoch as its run recorded it, and an HParams session with the
    searched parameters, the state and the trial's macro-F1 (a pruned one's best reported value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    for t in trials:
        folder = root / f"trial-{t.number:04d}"
        ea = EventAccumulator(str(folder))
        ea.Reload()
        f1 = [e.value for e in ea.Scalars("macro_f1")] if "macro_f1" in ea.Tags()["scalars"] else []
        assert f1 == pytest.approx(list(t.intermediate_values.values()), rel=1e-6), t.number
        sessions = {}
        for sub in [folder, *[p for p in folder.iterdir() if p.is_dir()]]:
            acc = EventAccumulator(str(sub))
            acc.Reload()
            for tag, content in acc.PluginTagToContent("hparams").items():
                sessions[tag] = plugin_data_pb2.HParamsPluginData.FromString(content)
            if "hparam/macro_f1" in acc.Tags()["scalars"]:
                final = acc.Scalars("hparam/macro_f1")[-1].value
        start = sessions["_hparams_/session_start_info"].session_start_info.hparams
        assert start["state"].string_value == t.state.name
        assert start["optimizer.lr"].number_value == pytest.approx(t.params["optimizer.lr"])
        if t.state == TrialState.COMPLETE:
            assert final == pytest.approx(t.value)
        elif t.state == TrialState.PRUNED:
            assert final == pytest.approx(max(t.intermediate_values.values()))
