"""Finished runs for the inference tests, trained once per test session (a few seconds on CPU) and shared by
tests/training/inference/test_predict.py and tests/search/results/test_ensemble.py, plus a hand-written eval path to
check predictions against: decode, fit, (x / 255 - mean) / std, the model, softmax or sigmoid."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import imagegen

__all__ = ["Runs", "trained_runs", "hand_probabilities", "NORMALIZE"]

NORMALIZE = {"r1": (0.5, 0.5), "r2": (0.4, 0.3), "r3": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
             "multilabel": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
_cache: dict[str, "Runs"] = {}


@dataclass(frozen=True)
class Runs:
    """Three single-label runs of the same 3 classes that differ in seed, normalization and input size, and a
    multi-label run of 3 labels (threshold 0.4)."""
    r1: Path            # train pipeline HorizontalFlip + Normalize(0.5, 0.5): val normalized by that Normalize
    r2: Path            # train and eval pipelines both Normalize(0.4, 0.3): the eval pipeline normalizes itself
    r3: Path            # no pipeline, image_size 12 (a second geometry), ImageNet mean/std
    multilabel: Path
    classes: list[str]
    labels: list[str]


def _fit(folder: Path, cfg: dict) -> Path:
    from training import fit, parse_config

    fit(parse_config(cfg), folder)
    return folder


def trained_runs(tmp_path_factory) -> Runs:
    """The session's runs (trained on the first call)."""
    if "runs" in _cache:
        return _cache["runs"]
    base = tmp_path_factory.mktemp("trained-runs")
    root, classes = imagegen.make_imagefolder(base / "train", n_classes=3, n_per_class=12, size=16)
    data = {"source": "imagefolder", "root": str(root)}
    flip = {"__class_fullname__": "HorizontalFlip", "p": 0.5}
    r1 = _fit(base / "r1", imagegen.base_config(data, base, augment={
        "train": [flip, {"__class_fullname__": "Normalize", "mean": 0.5, "std": 0.5, "p": 1.0}]}))
    norm2 = {"__class_fullname__": "Normalize", "mean": 0.4, "std": 0.3, "p": 1.0}
    r2 = _fit(base / "r2", imagegen.base_config(data, base, seed=1, augment={"train": [flip, norm2], "eval": [norm2]}))
    r3 = _fit(base / "r3", imagegen.base_config({**data, "image_size": 12}, base, seed=2))
    labels = ["red", "green", "blue"]
    csv = imagegen.make_csv_multilabel(base / "ml", labels=labels, n=32, size=16)
    ml = _fit(base / "ml-run", imagegen.base_config(
        {"source": "csv", "file": str(csv), "label_columns": labels}, base, loss={"name": "bce"},
        train={"threshold": 0.4, "epochs": 3}))
    _cache["runs"] = Runs(r1, r2, r3, ml, classes, labels)
    return _cache["runs"]


def hand_probabilities(run: Path, paths: list[Path], mean, std, multilabel: bool = False) -> np.ndarray:
    """The eval path written out by hand, for runs without an eval pipeline of their own (or with only a
    Normalize, given as mean/std): [N, C] probabilities."""
    import torch

    from training.config import load_config
    from training.data.images import fit_image, read_rgb
    from training.models import build_model

    cfg = load_config(run / "config.yaml")
    classes = json.loads((run / "metrics.json").read_text())["classes"]
    model = build_model(cfg.model, len(classes))
    model.load_state_dict(torch.load(run / "best.pt", weights_only=True))
    x = np.stack([fit_image(read_rgb(p), cfg.data) for p in paths]).astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    return (torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)).numpy()
