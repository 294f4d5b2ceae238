"""A run's val mistakes at its best epoch (training/mistakes.py): exactly the val images that its best.pt gets
wrong, as `search predict` reproduces them, the most confident first; a multi-label run's images with wrong
labels; and errors.png shows them."""

from __future__ import annotations

import numpy as np

import imagegen
from pngs import open_chart
from training import fit, parse_config
from training.inference import predict
from training.mistakes import errors_png, mistakes
from training.run_folder import read_predictions


def test_the_mistakes_are_the_val_images_best_pt_gets_wrong_the_most_confident_first(tmp_path):
    # eight classes, three epochs at a constant, too high lr: a run whose best epoch (2) is not its last and
    # still gets some of its val images wrong
    root, _ = imagegen.make_imagefolder(tmp_path / "imgs", n_classes=8, n_per_class=10, size=16, seed=3)
    cfg = imagegen.base_config({"source": "imagefolder", "root": str(root)}, tmp_path, train={"epochs": 3},
                               optimizer={"name": "adamw", "lr": 0.02}, scheduler={"name": "none"})
    r = fit(parse_config(cfg), tmp_path / "run")
    assert r["best_epoch"] < 3 and r["history"][-1]["macro_f1"] != r["macro_f1"], r["history"]
    found = mistakes(tmp_path / "run")
    cm = np.asarray(r["confusion_matrix"])
    assert len(found) == cm.sum() - np.trace(cm) > 0  # the best epoch's mistakes, no more, no fewer
    assert [m.probability for m in found] == sorted((m.probability for m in found), reverse=True)
    val = read_predictions(tmp_path / "run").names
    (tmp_path / "val.txt").write_text("\n".join(val) + "\n")
    pred = predict([tmp_path / "run"], tmp_path / "val.txt", tmp_path / "pred.csv")
    labels = {n: t for n, t in zip(val, read_predictions(tmp_path / "run").targets)}
    wrong = {n for n, c in zip(val, pred.decision) if c != labels[n]}
    assert {m.name for m in found} == wrong
    sheet = errors_png(tmp_path / "run", tmp_path / "errors.png", "a test")
    open_chart(sheet.read_bytes())


def test_a_multilabel_runs_mistakes_are_its_images_with_wrong_labels(tmp_path):
    f = imagegen.make_csv_multilabel(tmp_path / "ml", n=48, size=16)
    cfg = imagegen.base_config({"source": "csv", "file": str(f), "label_columns": ["red", "green", "blue"]},
                               tmp_path, train={"epochs": 1}, loss={"name": "bce"})
    fit(parse_config(cfg), tmp_path / "run")
    p = read_predictions(tmp_path / "run")
    said, truth = p.probabilities > 0.5, p.targets > 0.5
    found = mistakes(tmp_path / "run")
    assert {m.name for m in found} == {n for n, s, t in zip(p.names, said, truth) if (s != t).any()}
    assert [m.wrong for m in found] == sorted((m.wrong for m in found), reverse=True)
