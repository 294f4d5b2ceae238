"""From a validated config to a submission model: a full-data retrain for the exported epoch count, several
seeds, and k-fold cross-validation with stratified, grouped folds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import imagegen
from incli import run_main
from training import ConfigError, DataError, fit, parse_config
from training.checkpoint import load_checkpoint
from training.cv import combine, cross_validate
from training.data.split import fold_indices


def _digits(**train) -> dict:
    return {"seed": 0, "data": {"source": "digits", "limit": 200, "image_size": 8},
            "model": {"name": "test_resnet"}, "optimizer": {"name": "adamw", "lr": 0.01},
            "scheduler": {"name": "cosine"},
            "train": {"epochs": 4, "batch_size": 32, "device": "cpu", "num_threads": 1, **train}}


def test_full_data_retrain_uses_every_image_for_the_exported_epoch_count(tmp_path):
    r = fit(parse_config(_digits(full_data_epochs=2)), tmp_path, full_data=True)
    assert r["n_train"] == 200 and r["n_val"] == 0 and r["epochs_run"] == 2
    assert r["macro_f1"] is None and r["per_class_f1"] is None and "full-data" in r["validation"]
    split = json.loads((tmp_path / "split.json").read_text())
    assert len(split["train"]) == 200 and split["val"] == []
    # the cosine schedule's horizon is the 2 epochs run, not train.epochs (4): the lr has reached its floor
    assert r["history"][-1]["lr"] == pytest.approx(0.0, abs=1e-6)
    assert r["history"][-1]["train_loss"] < r["history"][0]["train_loss"]
    # the run's checkpoint is its final weights
    final = load_checkpoint(tmp_path / "last.pt")["model"]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert final.keys() == best.keys() and all(torch.equal(final[k], best[k]) for k in final)


def test_full_data_without_an_exported_epoch_trains_train_epochs(tmp_path):
    r = fit(parse_config(_digits(epochs=2, patience=1)), tmp_path, full_data=True)
    assert r["epochs_run"] == 2 and r["n_train"] == 200


@pytest.mark.parametrize("grouped", [False, True])
def test_folds_are_disjoint_cover_every_image_and_keep_groups_whole(grouped):
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(3), [30, 20, 10])
    groups = rng.integers(0, 12, size=len(targets)) if grouped else None
    vals = [fold_indices(targets, groups, 4, i, seed=0)[1] for i in range(4)]
    joined = np.concatenate(vals)
    assert len(joined) == len(targets) and set(joined.tolist()) == set(range(len(targets)))
    for i in range(4):
        tr, va = fold_indices(targets, groups, 4, i, seed=0)
        assert not set(tr.tolist()) & set(va.tolist()) and len(tr) + len(va) == len(targets)
        assert set(targets[va].tolist()) == {0, 1, 2}  # stratified: every class in every fold
        if grouped:
            assert not set(groups[tr].tolist()) & set(groups[va].tolist())


def test_more_folds_than_groups_is_one_clear_error():
    with pytest.raises(DataError) as ei:
        fold_indices(np.zeros(20, np.int64), np.repeat(np.arange(4), 5), 5, 0, seed=0)
    assert "data.folds = 5" in str(ei.value) and "only 4 groups" in str(ei.value) and "at most 4 folds" in str(ei.value)


def test_cross_validation_of_mask_data_keeps_every_person_in_one_fold(tmp_path):
    images, people = imagegen.make_mask_tree(tmp_path / "mask", n_people=9, size=8)
    cfg = parse_config({**_digits(epochs=1), "data": {"source": "mask", "root": str(images), "image_size": 8}})
    results = cross_validate(cfg, tmp_path / "cv", 3)
    vals = [json.loads((tmp_path / "cv" / f"fold-{i}" / "split.json").read_text())["val"] for i in range(3)]
    everything = sorted(sum(vals, []))
    assert len(everything) == 9 * 7 and len(set(everything)) == 9 * 7  # disjoint, and every image once
    person = {n: n.split("/")[-2] for n in everything}
    for i, val in enumerate(vals):
        others = {person[n] for j, v in enumerate(vals) if j != i for n in v}
        assert not {person[n] for n in val} & others
    cv = combine(results)
    assert cv["macro_f1"] == pytest.approx(np.mean([r["macro_f1"] for r in results]))
    assert cv["fold_macro_f1"] == [r["macro_f1"] for r in results]


def test_one_fold_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError) as ei:
        cross_validate(parse_config(_digits()), tmp_path / "cv", 1)
    assert "--folds 1" in str(ei.value) and "at least 2" in str(ei.value)
    assert not (tmp_path / "cv").exists()


def _cfg_file(tmp_path, **train):
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_digits(**train)))
    return path


def test_search_cv_prints_each_fold_and_the_mean_as_json(tmp_path, capfd, monkeypatch):
    _cfg_file(tmp_path, epochs=2)
    r = run_main(["cv", "--config", "cfg.yaml", "--folds", "3", "--output", "cv", "--json"],
                 cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(last["folds"]) == 3 and all(0 < f <= 1 for f in last["folds"])
    assert last["mean"] == pytest.approx(np.mean(last["folds"]))
    assert last["std"] == pytest.approx(np.std(last["folds"], ddof=1))
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("fold ")][0].startswith("fold 0: macro_f1 ")
    # each progress line says which fold it belongs to
    assert "epoch 2/2 of fold 2 (3 folds) macro_f1=" in r.stderr
    assert all((tmp_path / "cv" / f"fold-{i}" / "split.json").is_file() for i in range(3))


def test_search_train_seeds_runs_one_run_per_seed(tmp_path, capfd, monkeypatch):
    _cfg_file(tmp_path, epochs=2)
    r = run_main(["train", "--config", "cfg.yaml", "--seeds", "0,3", "--output", "s"],
                 cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    runs = {int(ln.split(":")[0].split()[1]): float(ln.split()[3]) for ln in lines if ln.startswith("seed ")}
    assert sorted(runs) == [0, 3] and runs[0] != runs[3]  # another init and augmentation: another result
    exact = [json.loads((tmp_path / "s" / f"seed-{seed}" / "metrics.json").read_text())["macro_f1"] for seed in runs]
    assert exact == pytest.approx(list(runs.values()), abs=5e-5)
    mean, std = np.mean(exact), np.std(exact, ddof=1)
    assert lines[-1] == f"macro_f1 mean {mean:.4f} +- {std:.4f} over 2 seeds"
    for seed in runs:  # each seed's run its own errors.png, drawn when it made val mistakes
        folder = tmp_path / "s" / f"seed-{seed}"
        wrong = json.loads((folder / "metrics.json").read_text())["accuracy"] < 1.0
        assert (folder / "errors.png").is_file() == wrong


def test_search_train_full_data_says_there_is_no_validation(tmp_path, capfd, monkeypatch):
    _cfg_file(tmp_path, full_data_epochs=1)
    r = run_main(["train", "--config", "cfg.yaml", "--full-data", "--output", "fd"],
                 cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    assert "no validation" in r.stdout and "all 200 images" in r.stdout and "trained 1 epochs" in r.stdout
    assert math.isfinite(json.loads((tmp_path / "fd" / "metrics.json").read_text())["history"][0]["train_loss"])
    assert not (tmp_path / "fd" / "errors.png").exists()  # no val images, no val mistakes


def test_full_data_with_an_auto_batch_keeps_the_validated_runs_batch(tmp_path):
    """'auto' keeps at least 8 steps per epoch: of the split's train side (240 of 300 images: batch 16), not of
    all 300 images (which would give 32 and change the steps and the lr per image of the validated run)."""
    cfg = {**_digits(epochs=1, batch_size="auto"), "data": {"source": "digits", "limit": 300, "image_size": 8}}
    validated = fit(parse_config(cfg), tmp_path / "split")
    full = fit(parse_config(cfg), tmp_path / "full", full_data=True)
    assert validated["n_train"] == 240 and full["n_train"] == 300
    assert validated["batch_size"] == full["batch_size"] == 16


def test_a_trained_runs_errors_sheet_never_keeps_an_earlier_runs(tmp_path, capsys):
    """Under --overwrite the folder may hold an earlier run's errors.png: a run with nothing to show removes it."""
    from search.cli._training_commands import _errors_sheet

    (tmp_path / "errors.png").write_bytes(b"an earlier run's sheet")
    _errors_sheet(tmp_path, "t")  # no val predictions kept: no mistakes to show
    assert not (tmp_path / "errors.png").exists()
    assert capsys.readouterr().err == ""
