"""End to end on scikit-learn's digits: fit learns, reports, and leaves a complete, reloadable output folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training import evaluate, fit, load_config, parse_config
from training.checkpoint import load_checkpoint
from training.data.prepare import prepare_data
from training.losses import build_loss
from training.metrics import classification_metrics
from training.models import build_model
from training.runtime import resolve_runtime

DIGITS = {
    "seed": 0,
    "data": {"source": "digits", "image_size": 16, "val_fraction": 0.2, "split_seed": 0},
    "model": {"name": "test_resnet", "pretrained": False},
    "loss": {"name": "ce"},
    "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01},
    "scheduler": {"name": "cosine", "warmup_epochs": 0.5},
    "train": {"epochs": 8, "batch_size": 64, "device": "cpu", "num_threads": 1},
}
RESULT_KEYS = {"macro_f1", "accuracy", "best_epoch", "epochs_run", "per_class_f1", "output_dir"}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    cfg = parse_config({**DIGITS, "data": {**DIGITS["data"], "cache_dir": str(out.parent / "cache")}})
    calls: list[tuple[int, dict]] = []
    result = fit(cfg, out, lambda epoch, m: calls.append((epoch, m)))
    return cfg, out, result, calls


def test_digits_reaches_095_macro_f1_and_improves_over_training(digits_run):
    _, _, r, calls = digits_run
    first = r["history"][0]["macro_f1"]
    assert r["macro_f1"] >= 0.95
    assert r["macro_f1"] > first, f"F1 did not rise from epoch 1 ({first:.3f})"
    assert r["best_epoch"] > 1
    f1s = [h["macro_f1"] for h in r["history"]]
    assert r["macro_f1"] == pytest.approx(max(f1s))
    assert r["history"][r["best_epoch"] - 1]["macro_f1"] == pytest.approx(r["macro_f1"])
    losses = [h["train_loss"] for h in r["history"]]
    assert losses[-1] < losses[0] / 3


def test_result_dict_fields(digits_run):
    cfg, out, r, _ = digits_run
    assert RESULT_KEYS <= set(r)
    assert r["epochs_run"] == 8 == len(r["history"])
    assert 1 <= r["best_epoch"] <= 8
    assert 0.9 <= r["accuracy"] <= 1.0
    assert r["output_dir"] == str(out)
    assert set(r["per_class_f1"]) == {str(d) for d in range(10)}
    assert all(0.0 <= v <= 1.0 for v in r["per_class_f1"].values())
    # macro-F1 is the mean of the per-class F1 (those are rounded to 6 digits)
    assert np.mean(list(r["per_class_f1"].values())) == pytest.approx(r["macro_f1"], abs=1e-5)
    assert r["n_train"] + r["n_val"] == 1797 and r["n_val"] == pytest.approx(0.2 * 1797, abs=2)
    assert r["skipped_images"] == 0


def test_callback_runs_after_every_epoch_with_that_epochs_metrics(digits_run):
    _, _, r, calls = digits_run
    assert [e for e, _ in calls] == list(range(1, 9))
    for (e, m), h in zip(calls, r["history"]):
        assert m["epoch"] == e == h["epoch"]
        assert m["macro_f1"] == pytest.approx(h["macro_f1"])
        assert {"train_loss", "val_loss", "lr", "accuracy", "per_class_f1"} <= set(m)


def test_output_folder_files(digits_run):
    cfg, out, r, _ = digits_run
    for name in ("config.yaml", "metrics.json", "best.pt", "last.pt", "split.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp")), "temporary files left behind"


def test_config_yaml_is_the_resolved_config_and_reloads(digits_run):
    cfg, out, _, _ = digits_run
    again = load_config(out / "config.yaml")
    assert again == cfg
    # resolved: defaults the input did not give are written out too
    text = (out / "config.yaml").read_text()
    assert "label_smoothing" in text and "on_bad_image" in text


def test_metrics_json_matches_result(digits_run):
    _, out, r, _ = digits_run
    m = json.loads((out / "metrics.json").read_text())
    for k in RESULT_KEYS:
        assert m[k] == r[k], k
    assert len(m["history"]) == 8


def test_split_json_is_disjoint_and_complete(digits_run):
    _, out, r, _ = digits_run
    s = json.loads((out / "split.json").read_text())
    assert s["split_seed"] == 0
    assert len(s["train"]) == r["n_train"] and len(s["val"]) == r["n_val"]
    assert not set(s["train"]) & set(s["val"])
    assert len(set(s["train"]) | set(s["val"])) == 1797


def test_last_checkpoint_holds_the_resume_state(digits_run):
    _, out, r, _ = digits_run
    ck = load_checkpoint(out / "last.pt")
    assert ck["epoch"] == 8
    assert {"model", "optimizer", "scheduler", "rng", "history", "best"} <= set(ck)
    assert len(json.loads(ck["history"])) == 8
    assert json.loads(ck["best"])["macro_f1"] == pytest.approx(r["macro_f1"])


def test_best_pt_reproduces_the_best_macro_f1_on_the_val_split(digits_run):
    cfg, out, r, _ = digits_run
    model = build_model(cfg.model, 10)
    model.load_state_dict(torch.load(out / "best.pt", map_location="cpu", weights_only=True))
    rt = resolve_runtime(cfg.train)
    data = prepare_data(cfg, rt.device, rt.channels_last, 64)
    split = json.loads((out / "split.json").read_text())
    assert [data.samples.names[i] for i in data.val_index] == split["val"]
    loss = build_loss("ce", gamma=0.0, weight=None, label_smoothing=0.0)
    scores, targets, _ = evaluate(model, data.val, loss, rt)
    m = classification_metrics(scores, targets, data.samples.classes, False)
    assert m["macro_f1"] == pytest.approx(r["macro_f1"], abs=1e-6)


def test_macro_f1_leaves_out_a_class_absent_from_val_and_never_predicted():
    """A rare class can be missing from a (grouped) val split: it has no F1, so it is not averaged in as 0."""
    scores = np.eye(3)[[0, 0, 1, 1]] * 5.0  # predicts classes 0 and 1 perfectly, never 2
    m = classification_metrics(scores, np.array([0, 0, 1, 1]), ["a", "b", "c"], False)
    assert m["macro_f1"] == pytest.approx(1.0) and m["per_class_f1"] == {"a": 1.0, "b": 1.0, "c": None}
    # predicted but absent from val: a real false positive, counted
    m = classification_metrics(np.eye(3)[[0, 2, 1, 1]] * 5.0, np.array([0, 0, 1, 1]), ["a", "b", "c"], False)
    assert m["per_class_f1"]["c"] == 0.0 and m["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    # multi-label: label 2 never positive and never predicted
    true = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    m = classification_metrics(np.where(true == 1, 5.0, -5.0), true, ["x", "y", "z"], True)
    assert m["macro_f1"] == pytest.approx(1.0) and m["per_class_f1"]["z"] is None
