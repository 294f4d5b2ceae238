"""fit's run control: a stopped run resumes from last.pt to the same result; patience stops early;
other timm backbones and the hidden head layer train."""

from __future__ import annotations

import json

import pytest

import imagegen
from training import fit, parse_config


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    imgs, _ = imagegen.make_imagefolder(root / "data", n_classes=3, n_per_class=10, size=16)
    return {"source": "imagefolder", "root": str(imgs), "cache_dir": str(root / "cache")}


class _Stop(Exception):
    pass


def test_resume_from_last_checkpoint_gives_the_uninterrupted_run(folder, tmp_path):
    cfg = parse_config(imagegen.base_config(folder, train={"epochs": 4}, scheduler={"name": "cosine"}))
    full = fit(cfg, tmp_path / "full")

    def stop_after_2(epoch, m):
        if epoch == 2:
            raise _Stop

    with pytest.raises(_Stop):
        fit(cfg, tmp_path / "part", stop_after_2)
    assert json.loads((tmp_path / "part" / "metrics.json").read_text())["epochs_run"] == 2
    resumed = fit(cfg, tmp_path / "part", resume_from=tmp_path / "part" / "last.pt")
    assert resumed["epochs_run"] == 4
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    for a, b in zip(full["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["lr"] == pytest.approx(b["lr"])
        assert a["macro_f1"] == pytest.approx(b["macro_f1"])
    assert resumed["best_epoch"] == full["best_epoch"]


def test_resume_with_cpu_albumentations_in_process_repeats_the_draws(folder, tmp_path):
    """An op without a tensor version (Rotate) runs through albumentations; with num_workers 0 its random
    stream must depend on (seed, epoch) only, or the resumed epochs see other augmentations."""
    rotate = [{"__class_fullname__": "Rotate", "limit": 30, "p": 1.0}]
    cfg = parse_config(imagegen.base_config({**folder, "num_workers": 0}, train={"epochs": 3},
                                            augment={"train": rotate}))
    full = fit(cfg, tmp_path / "full")

    def stop_at_2(epoch, m):  # last.pt then holds epoch 1: epochs 2 and 3 run again, after the resume
        if epoch == 2:
            raise _Stop

    with pytest.raises(_Stop):
        fit(cfg, tmp_path / "part", stop_at_2)
    resumed = fit(cfg, tmp_path / "part", resume_from=tmp_path / "part" / "last.pt")
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx([h["train_loss"] for h in full["history"]],
                                                                          rel=1e-5)


def test_resuming_a_run_that_stopped_early_does_not_train_on(folder, tmp_path):
    cfg = parse_config(imagegen.base_config(folder, train={"epochs": 12, "patience": 2},
                                            optimizer={"name": "adamw", "lr": 0.01}))
    first = fit(cfg, tmp_path / "out")
    assert first["epochs_run"] < 12
    again = fit(cfg, tmp_path / "out", resume_from=tmp_path / "out" / "last.pt")
    assert again["epochs_run"] == first["epochs_run"] and again["macro_f1"] == first["macro_f1"]


def test_each_epoch_is_reported_before_its_checkpoint(folder, tmp_path):
    """A run killed between the two must resume at an epoch it already reported (reported again, ignored),
    never after one it did not report: the pruner's curve has no hole."""
    import torch

    cfg = parse_config(imagegen.base_config(folder, train={"epochs": 3}))
    seen = []

    def check(epoch, m):
        last = tmp_path / "out" / "last.pt"
        seen.append(torch.load(last, weights_only=True)["epoch"] if last.exists() else 0)

    fit(cfg, tmp_path / "out", check)
    assert seen == [0, 1, 2]


def test_patience_stops_after_epochs_without_a_better_f1(folder, tmp_path):
    seen = []
    cfg = parse_config(imagegen.base_config(folder, train={"epochs": 12, "patience": 2},
                                            optimizer={"name": "adamw", "lr": 0.01}))
    r = fit(cfg, tmp_path / "out", lambda e, m: seen.append(m["macro_f1"]))
    assert r["epochs_run"] < 12
    assert r["epochs_run"] == r["best_epoch"] + 2
    assert max(seen[r["best_epoch"]:]) <= r["macro_f1"]


def test_efficientnet_with_hidden_head_layer_trains(folder, tmp_path):
    cfg = parse_config(imagegen.base_config(folder, model={"name": "test_efficientnet", "out_features": 32,
                                                           "dropout": 0.2}))
    r = fit(cfg, tmp_path / "out")
    assert r["epochs_run"] == 2 and len(r["per_class_f1"]) == 3
    import torch

    state = torch.load(tmp_path / "out" / "best.pt", weights_only=True)
    assert state["head.1.weight"].shape == (32, state["head.1.weight"].shape[1])
    assert state["head.4.weight"].shape == (3, 32)


def test_a_retry_in_a_new_folder_is_a_whole_run_even_when_nothing_is_left_to_train(folder, tmp_path):
    """A retried trial resumes into its own folder: it must hold best.pt, last.pt and metrics.json like any
    run (predict reads best.pt; a second retry resumes from last.pt), also when the checkpoint was final."""
    import torch

    cfg = parse_config(imagegen.base_config(folder, train={"epochs": 2}))
    first = fit(cfg, tmp_path / "first")
    again = fit(cfg, tmp_path / "retry", resume_from=tmp_path / "first" / "last.pt")
    assert sorted(p.name for p in (tmp_path / "retry").iterdir()) == \
        ["best.pt", "config.yaml", "last.pt", "metrics.json", "split.json"]
    assert again["macro_f1"] == first["macro_f1"] and again["output_dir"] == str(tmp_path / "retry")
    a, b = (torch.load(tmp_path / d / "best.pt", weights_only=True) for d in ("first", "retry"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    third = fit(cfg, tmp_path / "third", resume_from=tmp_path / "retry" / "last.pt")  # a second retry
    assert third["resumed_at_epoch"] == 2 and third["macro_f1"] == first["macro_f1"]
